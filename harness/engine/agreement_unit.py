"""The label-free task metric of a speed cell (harness.evaluation.agreement), run in the cell's worker after the
timed window: torch-fp32 saves its outputs on the agreement texts, every other configuration is compared with
them (harness.engine.units.speed calls `task_agreement`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.files import digest
from harness.engine.measure import check_finite
from harness.engine.rounds import beyond
from harness.engine.specs import AgreementSpec, SpeedSpec
from harness.inputs.texts import PAIR_SEP, as_pairs


def task_agreement(spec: SpeedSpec, loaded: Any, state: Any, timed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Round 0's label-free task metric (harness.evaluation.agreement), outside the timed window, in the
    dataset's last cell (the store gives every batch size's row its numbers). Not measured where the cell, like
    every other of the dataset, is decisively slower than torch-fp32 (`timed`: its fields): torch-fp32 is
    faster and, by the metric's definition, loses nothing, so no tolerance makes it an answer. A failure
    leaves the speed cell standing and says why in `agreement_source`."""
    if spec.agreement is None:
        return {}
    if spec.agreement.slower_than and beyond(timed or {}, spec.agreement.slower_than):
        return {
            "agreement_source": f"{spec.agreement.source}: not measured: decisively slower than torch-fp32 at "
            f"every batch size of these texts in round 0, so no tolerance makes it an answer"
        }
    key = digest([spec.job.key(), spec.agreement.ref_path])
    if key not in state.agreements:
        try:
            state.agreements[key] = _agreement(spec.agreement, loaded, spec.is_reference)
        except Exception as exc:  # noqa: BLE001 - recorded in the row, the timing is still good
            why = f"{spec.agreement.source}: failed: {type(exc).__name__}: {exc}"
            state.agreements[key] = {"agreement_source": why}
    return state.agreements[key]


def _agreement(a: AgreementSpec, loaded: Any, is_reference: bool) -> dict[str, Any]:
    """Encode the texts; torch-fp32 keeps its outputs (and agrees with itself: 1.0 exactly), others are ranked
    against them."""
    from harness.evaluation.agreement import POOL, task_agreement

    texts = list(a.texts)
    inputs: list[Any] = texts if loaded.kind == "bi-encoder" else as_pairs(texts)
    method = loaded.model.encode if loaded.kind == "bi-encoder" else loaded.model.predict
    outputs = method(inputs, batch_size=a.batch_size, show_progress_bar=False, convert_to_numpy=True)
    check_finite(outputs)
    outputs = np.asarray(outputs, dtype=np.float32)
    ref = Path(a.ref_path)
    if is_reference:
        if not ref.exists():
            ref.parent.mkdir(parents=True, exist_ok=True)
            tmp = ref.with_name(f"{ref.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, outputs)
            tmp.replace(ref)
        base = outputs
    elif ref.exists():
        base = np.load(ref)
    else:
        return {"agreement_source": f"{a.source}: no torch-fp32 outputs (its cell has not run or failed)"}
    # a file's own pairs rank per query; texts paired with their neighbours have no queries (a repeated text
    # would group a few pairs and drop the rest), so they rank in pseudo-queries of consecutive pairs
    real_pairs = loaded.kind == "cross-encoder" and all(PAIR_SEP in t for t in texts)
    queries = [q for q, _ in inputs] if real_pairs else None
    result = task_agreement(base, outputs, queries, pool=POOL)
    return {"agreement": result.value, "agreement_loss": result.loss, "agreement_n": result.n,
            "agreement_metric": result.metric, "agreement_source": f"{a.source}; {result.note}"}  # fmt: skip
