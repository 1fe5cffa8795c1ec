"""Imported once by the workers' fork server (harness.engine.workers): the heavy Python packages every speed
worker needs, so a forked worker starts without importing them again. Importing creates no runtime
(no ONNX Runtime session, no OpenVINO core or compiled model); each worker creates its own."""

import contextlib

import numpy  # noqa: F401
import sentence_transformers  # noqa: F401
import torch  # noqa: F401

import harness.engine.units  # noqa: F401

# The optional runtimes' Python layers (only what is installed); sentence-transformers imports them lazily.
for module in ("optimum.onnxruntime", "optimum.intel.openvino"):
    with contextlib.suppress(ImportError):
        __import__(module)
