"""What machine are we on: a fingerprint for result rows and the facts the recommender needs.

Detection reads /proc/cpuinfo (Linux) and falls back to `platform`; optional runtimes
(ONNX Runtime providers, OpenVINO devices, CUDA) are probed lazily and never required.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

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
    # What this process may use, which on a shared or scheduled machine is less than the host has: the CPUs
    # of its affinity (taskset, a cpuset, a SLURM allocation), its cgroup's CPU quota (cpu.max, in CPUs) and
    # memory limit (memory.max). () / None: not restricted, or not known. Not in the fingerprint.
    cpus_allowed: tuple[int, ...] = field(default_factory=tuple)
    cpu_quota: float | None = None
    memory_limit_gb: float | None = None

    @property
    def cpu_budget(self) -> int:
        """The threads every runtime gets by default: the physical cores, the CPUs this process may run on
        and its CPU quota, whichever is smallest."""
        limits = [self.cores_physical]
        if self.cpus_allowed:
            limits.append(len(self.cpus_allowed))
        if self.cpu_quota:
            limits.append(math.ceil(self.cpu_quota - 1e-9))
        return max(1, min(limits))

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
        d["cpus_allowed"] = list(self.cpus_allowed)
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
        cpus_allowed=allowed_cpus(),
        cpu_quota=cgroup_cpu_quota(),
        memory_limit_gb=None if (limit := cgroup_memory_limit()) is None else round(limit / 2**30, 2),
    )


# --- what this process may use (affinity, cgroup v2) ------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")


def allowed_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity: taskset, a container's cpuset, a SLURM allocation)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


@lru_cache(maxsize=1)
def cgroup_dir() -> Path | None:
    """This process's cgroup v2 folder, None without cgroup v2."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                folder = CGROUP_ROOT / line[3:].lstrip("/")
                return folder if folder.is_dir() else None
    except OSError:
        return None
    return None


def _cgroup_values(name: str) -> list[str]:
    """The file `name` in this cgroup and each parent up to the root (the tightest limit wins)."""
    folder, found = cgroup_dir(), []
    while folder is not None and CGROUP_ROOT in (folder, *folder.parents):
        try:
            found.append((folder / name).read_text().strip())
        except OSError:
            pass
        if folder == CGROUP_ROOT:
            break
        folder = folder.parent
    return found


@lru_cache(maxsize=8)
def _v1_dir(controller: str) -> Path | None:
    """This process's cgroup v1 folder of `controller` (hybrid hierarchies, as on many VMs), None without it."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            for mount in (CGROUP_ROOT / controller, CGROUP_ROOT / controllers):
                if (mount / path.lstrip("/")).is_dir():
                    return mount / path.lstrip("/")
    return None


def _v1_value(controller: str, name: str) -> int | None:
    folder = _v1_dir(controller)
    try:
        return int((folder / name).read_text().strip()) if folder else None
    except (OSError, ValueError):
        return None


def cgroup_cpu_quota() -> float | None:
    """The CPU quota in CPUs (v2 cpu.max "200000 100000", v1 cfs_quota_us / cfs_period_us -> 2.0), None
    when there is none."""
    quotas = []
    for value in _cgroup_values("cpu.max"):
        quota, _, period = value.partition(" ")
        if quota != "max" and period:
            quotas.append(int(quota) / int(period))
    quota_us, period_us = _v1_value("cpu", "cpu.cfs_quota_us"), _v1_value("cpu", "cpu.cfs_period_us")
    if quota_us and quota_us > 0 and period_us:
        quotas.append(quota_us / period_us)
    return min(quotas) if quotas else None


UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a huge page-aligned number


def cgroup_memory_limit() -> int | None:
    """The memory limit in bytes (v2 memory.max, v1 memory.limit_in_bytes), None when there is none."""
    limits = [int(v) for v in _cgroup_values("memory.max") if v.isdigit()]
    v1 = _v1_value("memory", "memory.limit_in_bytes")
    if v1 is not None and v1 < UNLIMITED:
        limits.append(v1)
    return min(limits) if limits else None


def cgroup_memory_current() -> int | None:
    """What the cgroup holds now (v2 memory.current, v1 memory.usage_in_bytes), None without a cgroup."""
    values = _cgroup_values("memory.current")
    if values and values[0].isdigit():
        return int(values[0])
    return _v1_value("memory", "memory.usage_in_bytes")


def cgroup_cpu_pressure_us() -> float | None:
    """Total microseconds some of this cgroup's tasks waited for a CPU (cpu.pressure "some"), None without it."""
    folder = cgroup_dir()
    try:
        line = (folder / "cpu.pressure").read_text().splitlines()[0] if folder else ""
    except OSError:
        return None
    total = next((part.split("=", 1)[1] for part in line.split() if part.startswith("total=")), None)
    return float(total) if total is not None else None
