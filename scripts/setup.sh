#!/usr/bin/env bash
# Create .venv and install the harness with every CPU backend family and the test tools.
# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[onnx,openvino,scale,dev]"
echo "set up: $(.venv/bin/harness --help | head -1)"
