"""What machine are we on: a fingerprint for result rows and the facts the recommender needs.

Detection reads /proc/cpuinfo (Linux) and falls back to `platform`; optional runtimes
(ONNX Runtime providers, OpenVINO devices, CUDA) are probed lazily and never required.
"""

from __future__ import annotations

import hashlib
import os
import platform
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import psutil

# ISA flags that matter for backend choice, as /proc/cpuinfo spells them.
TRACKED_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
)


@dataclass(frozen=True)
class Hardware:
    cpu_model: str
    cpu_vendor: str  # "intel" | "amd" | "arm" | "unknown"
    cpu_flags: tuple[str, ...]
    cores_physical: int
    cores_logical: int
    memory_gb: float
    gpu: str | None = None  # device name, None when there is no usable GPU
    ort_providers: tuple[str, ...] = field(default_factory=tuple)
    ov_devices: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fingerprint(self) -> str:
        """Stable id of the machine *type*: what makes timings comparable, not the hostname."""
        key = "|".join(
            [
                self.cpu_model,
                self.cpu_vendor,
                ",".join(sorted(self.cpu_flags)),
                str(self.cores_physical),
                str(self.cores_logical),
                str(round(self.memory_gb)),
                self.gpu or "-",
            ]
        )
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def has(self, flag: str) -> bool:
        return flag in self.cpu_flags

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        d["ort_providers"] = list(self.ort_providers)
        d["ov_devices"] = list(self.ov_devices)
        d["fingerprint"] = self.fingerprint
        return d


def _vendor(vendor_id: str, machine: str) -> str:
    v = vendor_id.lower()
    if "intel" in v:
        return "intel"
    if "amd" in v:
        return "amd"
    if machine.lower() in ("aarch64", "arm64") or "arm" in v:
        return "arm"
    return "unknown"


def _read_cpuinfo() -> tuple[str, str, set[str]]:
    model, vendor_id, flags = "", "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "vendor_id" and not vendor_id:
                    vendor_id = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), vendor_id, flags


def detect_gpu() -> str | None:
    """Name of the first CUDA device, if torch sees one. Never raises."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - detection must not break a run
        return None
    return None


@lru_cache(maxsize=1)
def detect() -> Hardware:
    """Detect this machine: CPU, cores, memory, GPU. What the runtimes report about it (providers,
    devices) each backend family adds itself (`harness.backends.probe`: imports them, slow)."""
    model, vendor_id, flags = _read_cpuinfo()
    return Hardware(
        cpu_model=model,
        cpu_vendor=_vendor(vendor_id, platform.machine()),
        cpu_flags=tuple(sorted(f for f in flags if f in TRACKED_FLAGS)),
        cores_physical=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        cores_logical=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        gpu=detect_gpu(),
    )
