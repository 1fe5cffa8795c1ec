"""Config validation: one line naming the field, the value and what is allowed."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from harness.backends import named as _named
from harness.config import ConfigError, DatasetConfig, ModelConfig, SweepConfig
from harness.engine.preflight import check_config as validate

BACKENDS = _named()


def _cfg(**overrides):
    cfg = OmegaConf.structured(SweepConfig)
    cfg.model = OmegaConf.structured(ModelConfig(name="m", source="x"))
    cfg.dataset = OmegaConf.structured(DatasetConfig(name="short", bucket="short"))
    cfg.backend = OmegaConf.structured(BACKENDS["onnx"])
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("batch_sizes", [0], "batch_sizes: 0"),
        ("batch_sizes", [-4], "batch_sizes: -4"),
        ("batch_sizes", [], "batch_sizes: \\[\\] is not allowed"),
        ("model.kind", "bi-encodr", "Did you mean 'bi-encoder'"),
        ("backend.quantization", "avx513", "Did you mean 'avx512'"),
        ("dataset.bucket", "tiny", "dataset.bucket"),
        ("accuracy.tasks", ["sts", "retreival"], "Did you mean 'retrieval'"),
    ],
)
def test_validate_names_field_value_and_allowed(key, value, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(_cfg(**{key: value}))


def test_validate_accepts_defaults():
    validate(_cfg())
