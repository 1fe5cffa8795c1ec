"""What the rows mean: one rule for each question that report, recommend and compare all ask.

* where a row ran (`device_of`): read back from the runtime, never guessed from the machine;
"""

from __future__ import annotations

from typing import Any

from harness import backends


def as_dict(value: Any) -> dict:
    """A JSON column's value as a dict ({} for a missing or malformed one)."""
    return value if isinstance(value, dict) else {}


def device_of(row: dict[str, Any]) -> str:
    """'GPU' or 'CPU': where this row's backend ran, as its runtime reported (`runtime["device"]`).

    Rows written before the runtimes reported it fall back to what the row recorded, as its
    backend family reads it (`Backend.device_without_readback`).
    """
    device = as_dict(row.get("runtime")).get("device")
    if not (isinstance(device, str) and device):
        hardware, settings = as_dict(row.get("hardware")), as_dict(row.get("settings"))
        family = settings.get("st_backend") or backends.family_of(str(row.get("backend")))
        if family in backends.REGISTRY:
            device = backends.backend_class(family).device_without_readback(settings, hardware)
        else:
            device = "cuda" if hardware.get("gpu") else "cpu"
    return "CPU" if device.lower().startswith("cpu") else "GPU"
