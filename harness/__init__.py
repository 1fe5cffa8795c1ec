"""harness: which sentence-transformers backend should *this* machine run, how much faster, at what accuracy?

The package is in layers; each imports only from those below it (`import-linter` contracts in
pyproject.toml, run by tests/test_architecture.py):

    cli/         one thin module per subcommand (sweep, report, recommend, compare, export, overhead, duel)
                 and the sweep's progress display; the only layer that prints
    report/      pure DataFrame -> Figure chart functions, HTML / Markdown pages   } independent of
    recommend/   the docs' flowcharts, this machine's evidence, the decision, code } each other
    engine/      checks and plans a sweep (overrides, grid, preflight, plan, cells), runs its jobs (sweep),
                 isolates units in processes (isolation, workers, preload) and measures them (units,
                 measure, rounds, serving; interleave: neighbouring passes of two workers)
    store/       row types, the store of atomic JSON rows, labels, analysis (pairing, contention,
                 accuracy), comparison of runs
    evaluation/  STS, retrieval, fidelity and agreement, on an encode / predict protocol only
    backends/    one module per family (torch, onnx, openvino; more through the `harness.backends`
                 entry-point group) and the export cache they fill
    inputs/      models (and offline stand-ins), texts, evaluation data files
    config.py    the run / sweep schema (structured configs)
    core/        one-line errors and their checks, the machine (hardware), files and digests

Data flows one way: config -> cell -> backend (exported once, cached) -> measurement -> typed row ->
store -> analysis -> charts / recommendation. The public API: `harness.load(results_dir)` (the store as a
DataFrame), `harness.recommend.recommend(df, query, hw)` (with `Query`, `Hardware` beside it), and
`from harness import results`.
"""

from __future__ import annotations

from typing import Any

_API = {
    "load": "harness.store.results:load",
    "recommend": "harness.recommend",
    "results": "harness.store.results",
}


def __getattr__(name: str) -> Any:
    """The public API, imported when first used: `import harness.core.usage` in a worker stays light."""
    if name not in _API:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    import importlib

    module, _, attr = _API[name].partition(":")
    found = importlib.import_module(module)
    return getattr(found, attr) if attr else found


__all__ = ["load", "recommend", "results"]
