"""The layout holds: imports only go down (import-linter's contracts in pyproject.toml, which name every
layer), every reference held in a string resolves, modules stay readable, and the public API stays where
users and configs find it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import harness

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
MAX_MODULE_LINES = 400
MAX_ENGINE_FUNCTION_LINES = 60


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_import_contracts_hold():
    """`lint-imports` with the contracts in pyproject.toml: a new upward import or circle fails here."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_layers_contract_names_every_package_and_ignores_nothing():
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    top = {f"harness.{m.name}" for m in pkgutil.iter_modules([str(PACKAGE)])}
    assert top == named, f"modules outside a layer: {sorted(top - named)}; named but missing: {sorted(named - top)}"
    assert all("ignore_imports" not in c for c in contracts), "a contract that ignores imports hides a circle"


def test_every_module_imports():
    """Each module on its own (an import that only works in some order is a hidden circle)."""
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="harness."):
        if info.name.endswith("__main__"):
            continue
        done = subprocess.run([sys.executable, "-c", f"import {info.name}"], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, f"{info.name}: {done.stderr[-1500:]}"


def _resolve(target: str) -> object:
    """ "pkg.module:attr" or "pkg.module.attr" -> the object (the forms Hydra, entry points and tables use)."""
    if ":" in target:
        module, _, attr = target.partition(":")
    else:
        module, _, attr = target.rpartition(".")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _targets(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "_target_"] + [t for v in node.values() for t in _targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in _targets(v)]
    return []


def test_string_references_resolve():
    """What import-linter cannot see: Hydra `_target_`s in conf/, the fork server's preload modules, the
    subcommand table, the backend registry, the units a worker dispatches by name, the console script."""
    from harness import backends, cli
    from harness.engine import isolation, units

    targets = [t for f in (ROOT / "conf").rglob("*.yaml") for t in _targets(yaml.safe_load(f.read_text()) or {})]
    assert "harness.cli.progress.SweepProgress" in targets
    for target in targets:
        assert callable(_resolve(target)), target
    for config in (ROOT / "conf" / "hydra").glob("*_logging/*.yaml"):  # logging's handler classes
        for handler in (yaml.safe_load(config.read_text()).get("handlers") or {}).values():
            if str(handler.get("class", "")).startswith("harness."):
                assert callable(_resolve(handler["class"])), config
    for module in isolation.PRELOAD:
        importlib.import_module(module)
    for command, target in cli.COMMANDS.items():
        assert callable(_resolve(target)), command
    for family, target in backends.registry().items():
        assert issubclass(_resolve(target), backends.Backend), family
    for task in units.TASKS:
        assert callable(getattr(units, task)), task
    for name, target in _pyproject()["project"]["scripts"].items():
        assert callable(_resolve(target)), name


def test_modules_are_short_and_engine_functions_shorter():
    long_modules, long_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        if "engine" not in path.parts:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > MAX_ENGINE_FUNCTION_LINES:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.name}: {node.end_lineno - start + 1}")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_the_public_api_stays_where_users_find_it():
    from harness import results

    assert callable(results.load) and callable(harness.load) and callable(harness.recommend.recommend)
    assert harness.load is results.load
    assert "Layout" in (harness.__doc__ or "") or "layers" in (harness.__doc__ or "")


@pytest.mark.parametrize("package", ["core", "config", "inputs", "backends", "evaluation", "store", "engine",
                                     "report", "recommend", "cli"])  # fmt: skip
def test_each_layer_says_what_it_is(package):
    module = importlib.import_module(f"harness.{package}")
    assert (module.__doc__ or "").strip(), f"harness.{package} has no docstring"
