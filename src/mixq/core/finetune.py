"""Settings of label-free distillation (KD) of a chosen plan, backend-neutral.

After a search picks one precision per group, distillation fine-tunes that plan only: the float model is
the teacher, the plan's fake-quantized model the student, and the loss the KL divergence of their output
distributions (optionally plus the MSE of the quantized groups' outputs). Float weights (rounded with a
straight-through estimator) and the step sizes of weights (per channel) and static activations (LSQ, Esser
et al. 2020) are learned with Adam on the unlabeled calibration samples. The learned grids become
:class:`mixq.core.tuned.TunedQuantizers`, so evaluation and export reproduce what was trained.

The training loop is framework code (``mixq.backends.torch.finetune``); this module holds only what a user
sets (``--finetune-kd STEPS``, ``--finetune-minutes M``, ``--kd-feature-weight W``, ``--tune-option``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mixq.errors import ConfigError


@dataclass(frozen=True)
class KdSettings:
    """How long and how a plan is distilled.

    Attributes:
        steps: Adam steps (one batch each); the run stops at ``steps`` or ``minutes``, whichever comes first.
        minutes: wall-clock bound (None: none). A run cut by time is not reproducible step for step.
        batch_size: calibration samples per step (sampled without replacement per epoch, seeded).
        temperature: softmax temperature of the KL loss (the loss is scaled by its square, as Hinton et al.).
        feature_weight: weight of the quantized groups' output MSE (normalised by the teacher's energy);
            0 = outputs only.
        weight_lr: Adam's step for float weights, as a fraction of the weight's quantization step: it moves
            weights across rounding boundaries at a rate independent of their scale.
        scale_lr: Adam's step for step sizes, as a fraction of their calibrated value.
        seed: seeds the batch order.
    """

    steps: int = 200
    minutes: float | None = None
    batch_size: int = 16
    temperature: float = 1.0
    feature_weight: float = 0.0
    weight_lr: float = 0.01
    scale_lr: float = 0.002
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"--finetune-kd takes at least 1 step, got {self.steps}")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ConfigError(f"--finetune-minutes must be a positive number of minutes, got {self.minutes}")
        if self.batch_size < 1:
            raise ConfigError(f"the distillation batch size must be at least 1, got {self.batch_size}")
        for name in ("temperature", "weight_lr", "scale_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"the distillation's {name} must be a positive number, got {value}")
        if not (math.isfinite(self.feature_weight) and self.feature_weight >= 0):
            raise ConfigError(f"--kd-feature-weight must be 0 or more, got {self.feature_weight}")

    @classmethod
    def from_search(cls, search: Any) -> KdSettings:
        """Defaults seeded by the search's ``seed``, so one seed decides the whole run."""
        return cls(seed=int(getattr(search, "seed", 0)))


__all__ = ["KdSettings"]
