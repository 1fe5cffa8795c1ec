"""The code that loads a backend: the sentence-transformers call, and the one-time export before it.

What a backend loads with (its ST backend name, documented model_kwargs, export function) is said by
the backend family itself (`harness.backends`); this module only writes it as Python.
"""

from __future__ import annotations

import json
from typing import Any

from harness import backends
from harness.core.hardware import Hardware


def _registered(backend: str, hw: Hardware) -> backends.Backend:
    found = backends.registered(backend, hw)
    if found is None:
        raise ValueError(f"{backend!r} is not a registered backend")
    return found


def st_backend(backend: str) -> str:
    """The `backend=` argument of sentence-transformers for one of our backend names."""
    return backends.backend_class(backends.family_of(backend) or "").st_backend


def documented_model_kwargs(backend: str, hw: Hardware) -> dict[str, Any]:
    """The model_kwargs the docs use to load `backend` from a folder holding the exported files
    (ValueError when no int8 config fits this CPU)."""
    return _registered(backend, hw).documented_model_kwargs()


def _py(value: Any) -> str:
    """A Python literal with double-quoted strings (json.dumps escapes are valid Python too)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def python_snippet(
    model_kind: str, model_path: str, backend: str, model_kwargs: dict[str, Any] | None, st: str | None = None
) -> str:
    """The sentence-transformers call that loads `backend` (`st`: the recorded backend= value, if any)."""
    cls = "CrossEncoder" if model_kind == "cross-encoder" else "SentenceTransformer"
    st = st or st_backend(backend)
    args = [_py(model_path)]
    if st != "torch":
        args.append(f"backend={_py(st)}")
    prelude = ""
    kwargs = dict(model_kwargs or {})
    options = kwargs.get("session_options")
    if isinstance(options, dict):  # recorded as data; ONNX Runtime wants a SessionOptions object
        lines = ["import onnxruntime as ort", "session_options = ort.SessionOptions()"]
        lines += [f"session_options.{k} = {int(options[k])}" for k in ("intra_op_num_threads", "inter_op_num_threads")
                  if k in options]  # fmt: skip
        if options.get("allow_spinning") is not None:  # pinned by a knob; otherwise ORT's default is what ran
            spin = "1" if options["allow_spinning"] else "0"
            lines += [f'session_options.add_session_config_entry("session.{op}.allow_spinning", "{spin}")'
                      for op in ("intra_op", "inter_op")]  # fmt: skip
        prelude = "\n".join(lines) + "\n"
        kwargs["session_options"] = _Raw("session_options")
    if kwargs:
        args.append(f"model_kwargs={_py(kwargs)}")
    return f"{prelude}from sentence_transformers import {cls}\n\nmodel = {cls}({', '.join(args)})"


class _Raw(str):
    """A name to print as code, not as a string literal."""

    def __repr__(self) -> str:
        return str(self)


def export_hint(backend: str, model_kind: str, model_path: str, hw: Hardware) -> str:
    """Commented one-time export lines for backends whose files the docs create by exporting."""
    loaded = _registered(backend, hw)
    call = loaded.export_call()
    if call is None:
        return ""
    fn, arg = call
    cls = "CrossEncoder" if model_kind == "cross-encoder" else "SentenceTransformer"
    p = _py(model_path)
    load = f"{cls}({p}, backend={_py(loaded.st_backend)})"
    return (
        "# once, to create the file inside the model's local folder (for a Hub model:\n"
        "# save_pretrained() it to a folder first, or pass push_to_hub=True):\n"
        f"# from sentence_transformers import {cls}, {fn}\n"
        f"# {fn}({load}, {_py(arg)}, {p})\n"
    )
