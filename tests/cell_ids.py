"""The cell ids of the default, docs-cpu and sizes grids on a fixed machine: cell ids are digests of
config dicts, so moving a schema field or renaming a module can rename every cell of a user's store
without anyone noticing. `tests/data/cell_ids.json` was written by this module *before* the layers
refactor (issue 21); `test_cell_ids.py` recomputes it with the code as it is now.

Regenerate (only when a change of ids is intended and said in the commit): python tests/cell_ids.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIXED_HARDWARE = dict(
    cpu_model="AMD EPYC (fixed test machine)",
    cpu_vendor="amd",
    cpu_flags=("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "fma"),
    cores_physical=2,
    cores_logical=2,
    memory_gb=23.0,
)
GRIDS = {"default": [], "docs-cpu": ["+experiment=docs-cpu"], "sizes": ["+experiment=sizes"]}
SNAPSHOT = Path(__file__).parent / "data" / "cell_ids.json"


def grid_ids(args: list[str], results_dir: Path, monkeypatch) -> list[str]:
    """Every speed and accuracy cell id the sweep `args` plans, on FIXED_HARDWARE, with OpenVINO choosing
    bf16 (so the f32 companions are in the grid), HARNESS_DATA_DIR unset and the Hub taken as reachable
    (accuracy cells named by the Hub sets, not by a local path)."""
    from harness.backends import openvino
    from harness.cli.sweep import with_default_experiment
    from harness.config import CONF_DIR
    from harness.core import hardware
    from harness.engine import cells, grid
    from harness.engine import plan as plan_module

    monkeypatch.delenv("HARNESS_DATA_DIR", raising=False)
    # minilm-ce's source is ${oc.env:HARNESS_SHARED_DIR,../shared}/...: the snapshot was taken with it unset
    monkeypatch.delenv("HARNESS_SHARED_DIR", raising=False)
    monkeypatch.setattr(hardware, "detect", lambda *a, **k: hardware.Hardware(**FIXED_HARDWARE))
    monkeypatch.setattr(openvino, "default_precision", lambda device="CPU": "bf16")
    monkeypatch.setattr(cells, "hub_unreachable", lambda: None)  # the Hub's names: accuracy cells are planned
    (results_dir / "x").mkdir(parents=True, exist_ok=True)
    # a store with a finished cell in it (not of this grid): the plan names its cells to look them up
    (results_dir / "x" / "not-a-row.json").write_text('{"cell_id": "not-a-row", "status": "ok"}')
    seen: list[str] = []
    original = plan_module.make_plan

    def recording(*a, **k):
        def wrap(fn):
            def inner(*x):
                ids = fn(*x)
                seen.extend(i for i in ids if i)
                return ids

            return inner

        k["cell_ids"], k["accuracy_ids"] = wrap(k["cell_ids"]), wrap(k["accuracy_ids"])
        k["done_ids"] = {"never-a-cell"}
        return original(*a, **k)

    monkeypatch.setattr(plan_module, "make_plan", recording)
    args = [*args, f"results_dir={results_dir}", "run=x"]
    if not any(a.lstrip("+~").startswith("experiment=") for a in args):
        args = with_default_experiment(args)
    grid.plan_sweep(args, CONF_DIR)
    return sorted(set(seen))


def main() -> None:
    import tempfile

    import pytest

    mp = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as tmp:
        out = {name: grid_ids(args, Path(tmp) / name, mp) for name, args in GRIDS.items()}
    mp.undo()
    SNAPSHOT.write_text(json.dumps(out, indent=1) + "\n")
    print({k: len(v) for k, v in out.items()}, file=sys.stderr)


if __name__ == "__main__":
    main()
