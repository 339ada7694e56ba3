"""Data-free calibration (ZeroQ, Cai et al. 2020): the request and its settings, framework-free.

When the user has no images, a backend that can reach the float model's batch-norm statistics distils
inputs from Gaussian noise so that every BatchNorm layer sees the mean and spread it was trained on
(``Backend.synthesize_calibration``). These types say what to distil; they live in the core so the API,
the CLI and the backends share them without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mixq.errors import ConfigError

#: What ``--data`` says to ask for distilled data instead of images.
SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class SyntheticSettings:
    """How the inputs are optimised (Adam on the pixels; the paper uses 500 iterations, batch = samples).

    The defaults trade the paper's 500 iterations for 40, so 32 EfficientNet-Lite0 samples take minutes on
    a CPU, not most of an hour; on Lite0 the statistics loss has then fallen by about two thirds (from N(0, 1)
    noise), and by 0.1 was the best of the learning rates tried (0.05 to 0.5; see ``BENCHMARKS.md``).
    """

    iterations: int = 40
    lr: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"synthetic data: iterations (--synthetic-iterations) must be a positive integer, got "
                              f"{self.iterations!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) \
                or not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"synthetic data: lr (--synthetic-lr) must be a positive number, got {self.lr!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SyntheticData:
    """Calibrate and evaluate on distilled inputs instead of images: ``search(model, SyntheticData((3, 224,
    224)), config)``. ``config.num_samples`` inputs of ``shape`` (one sample, e.g. ``(C, H, W)``) are distilled
    with ``config.seed``; quality is then agreement with the float model on them (there are no labels)."""

    shape: tuple[int, ...]
    settings: SyntheticSettings = field(default_factory=SyntheticSettings)

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ConfigError(f"synthetic data needs one sample's input shape as positive integers, e.g. (3, 224, "
                              f"224), got {self.shape!r}")
        object.__setattr__(self, "shape", shape)

    def record(self, samples: int, seed: int) -> dict[str, Any]:
        """What the run directory records (and what a cached set must match to be reused)."""
        return {"method": "zeroq", "samples": samples, "shape": list(self.shape), "seed": seed,
                **self.settings.to_dict()}
