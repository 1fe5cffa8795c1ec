"""Compose one run's config outside a Hydra app (for subcommands that need a single cell's config)."""

from __future__ import annotations

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from harness.config import register_configs


def compose(overrides: list[str]) -> DictConfig:
    from harness.cli import CONF_DIR
    from harness.validate import check_overrides

    check_overrides(overrides, CONF_DIR)
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)
