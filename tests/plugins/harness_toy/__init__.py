"""A backend family from outside the package: what a user's own distribution would register.

It runs PyTorch as `torch-fp32` does and adds one runtime knob of its own, so the test sees the family's
names, its knob in the schema, its variants and its rows all the way through sweep, report and recommend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.backends.torch import TorchBackend
from harness.core.usage import check_positive_int


@dataclass
class ToyKnobs:
    toy_level: int = 1


class ToyBackend(TorchBackend):
    names = {"toy-fp32": {"dtype": "float32"}}
    Knobs = ToyKnobs
    speed_only_knobs = ("toy_level",)
    libraries = ()

    @classmethod
    def check_fields(cls, cfg: Any) -> None:
        check_positive_int("backend.toy_level", cfg.toy_level)

    def runtime(self, model: Any) -> dict[str, Any]:
        return {**super().runtime(model), "toy_level": self.cfg.toy_level}
