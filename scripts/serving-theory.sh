#!/usr/bin/env bash
# The server scenario's loop against M/D/1 theory (tests/test_serving.py): mean latency within 5 % at
# rho 0.5 and 0.8, the sustainable-rate search within 5 % of the theoretical rate. These are timing targets:
# run them on a quiet machine (nothing else busy), not in CI. About a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS_TIMING_TESTS=1 .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_serving.py -m slow "$@"
