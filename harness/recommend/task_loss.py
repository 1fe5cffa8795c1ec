"""What --tolerance is checked against without labelled data: the label-free task loss.

The docs quote a backend's cost as a relative drop of a task metric ("onnx-qint8 loses 0.4 %"). Without
labels, torch-fp32's own outputs stand in for the annotators (harness.evaluation.agreement): embeddings rank
random pairs of >= 500 texts by similarity (the STS task), cross-encoders rank each query's documents, and the
loss is 1 - the Spearman correlation with fp32's order, so `--tolerance 0.004` means a 0.4 % drop of a task
metric, as the docs mean. The worst single text's cosine (or the scores' Spearman) is another unit, one
text's distance rather than a task's loss: it stays reported, and is a rule only where --min-cosine /
--min-spearman ask for it.
"""

from __future__ import annotations

from typing import Any

from harness.evaluation.agreement import MIN_RELIABLE


def describe(task_loss: dict[str, Any]) -> str:
    """'label-free task loss 0.31% (neighbour_ndcg@10 vs torch-fp32, 946 texts, medium)'."""
    datasets = task_loss.get("datasets") or 1
    where = task_loss["dataset"] if datasets == 1 else f"worst of {datasets} datasets: {task_loss['dataset']}"
    n = task_loss.get("n")
    builtin = ", built-in texts, not yours" if "built-in" in task_loss.get("texts", "") else ""  # dataset=file: yours
    what = f"{task_loss['metric']} vs torch-fp32, {n} texts, {where}{builtin}"
    return f"label-free task loss {task_loss['loss']:.2%} ({what})"


def verdict(task_loss: dict[str, Any], tolerance: float, floor_option: str, floor_only: bool) -> tuple[str, list[str]]:
    """A candidate's tolerance verdict without labels, and the rules it broke.

    `floor_only`: no row of the store has a task loss (written before it was measured, or
    measure.agreement_texts=0) and the user gave a fidelity floor (`floor_option`): that floor decides alone.
    """
    if not task_loss:
        if floor_only:
            return f"no label-free task loss measured: judged on {floor_option} alone", []
        why = (
            "no label-free task loss measured (rows from before it, or measure.agreement_texts=0), so --tolerance "
            f"cannot be checked; {floor_option} decides on the worst-case fidelity instead"
        )
        return why, [why]
    text = describe(task_loss)
    n = task_loss.get("n")
    if n is None or n < MIN_RELIABLE:
        why = f"{text}: fewer than {MIN_RELIABLE} texts, too few for --tolerance"
        return why, [why]
    ok = task_loss["loss"] <= tolerance + 1e-9
    why = f"{text} {'<=' if ok else '>'} {tolerance:.2%}"
    return why, [] if ok else [f"{why} (--tolerance {tolerance:g})"]
