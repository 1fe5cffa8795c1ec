"""Imported once by the workers' fork server (harness.workers): the heavy Python packages every speed
worker needs, so a forked worker starts without importing them again. Importing creates no runtime
(no ONNX Runtime session, no OpenVINO core or compiled model); each worker creates its own."""

import contextlib

import numpy  # noqa: F401
import sentence_transformers  # noqa: F401
import torch  # noqa: F401

import harness.work  # noqa: F401

# The optional runtimes' Python layers (only what is installed); sentence-transformers imports them lazily.
for module in ("optimum.onnxruntime", "optimum.intel.openvino"):
    with contextlib.suppress(ImportError):
        __import__(module)

# sentence-transformers' encode builds a (disabled) tqdm bar per call, and tqdm's first bar in a process
# creates a multiprocessing lock: a named semaphore. A worker still alive at the end of a sweep is
# terminated, so its semaphore was never unlinked, and the sweep ended on "resource_tracker: There appear
# to be 13 leaked semaphore objects" (one per backend of the last round). No worker draws a bar, so the
# workers use tqdm's thread lock alone (what tqdm itself falls back to where a semaphore cannot be made).
from tqdm.std import TqdmDefaultWriteLock  # noqa: E402

TqdmDefaultWriteLock.mp_lock = None
