"""What AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization")
needs to know, framework-free: the layer it rounds, its settings, and the content key of one result.

Nearest rounding minimises each weight's own error, not the layer's output error: AdaRound learns, per
weight, whether to round down or up so that ``||W x - W~ x||^2`` on the layer's calibration inputs is
smallest. The optimisation runs in a backend (torch, :mod:`mixq.backends.torch.adaround`); this module
holds what is backend-neutral so that a result can be described, cached and reused by content: the op
(:class:`LayerSpec`), the settings (:class:`AdaRoundConfig`) and :func:`adaround_key`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mixq.core.graph import OpKind
from mixq.core.precision import ADAROUND_BATCH_SIZE, ADAROUND_ITERATIONS, ADAROUND_REG_WEIGHT, QuantScheme
from mixq.core.ranges import QuantParams

#: Ops AdaRound can round: each has a weight and is linear in its input.
ROUNDABLE = (OpKind.CONV, OpKind.DEPTHWISE_CONV, OpKind.LINEAR, OpKind.MATMUL)


@dataclass(frozen=True)
class LayerSpec:
    """The op whose weight is rounded, described without a framework.

    Layouts (channels first, as torch and ONNX store them):

    * ``conv`` / ``depthwise_conv``: weight ``(out, in / groups, *kernel)``, inputs ``(N, in, *spatial)``;
      a depthwise conv is a conv with ``groups == in``.
    * ``linear``: weight ``(out, in)``, inputs ``(N, ..., in)`` (``x @ W.T``).
    * ``matmul``: a MatMul with a constant second operand: weight ``(in, out)``, inputs ``(N, ..., in)``
      (``x @ W``; the output channel is axis 1).

    ``bias`` (``(out,)``) is added to the output; it stays in float, as in mixq's simulations.
    """

    kind: OpKind
    stride: tuple[int, ...] = (1,)
    padding: tuple[int, ...] = (0,)
    dilation: tuple[int, ...] = (1,)
    groups: int = 1
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in ROUNDABLE:
            raise ValueError(f"AdaRound rounds conv, depthwise conv, linear and matmul weights, not {self.kind.value}")
        if self.groups < 1:
            raise ValueError(f"groups must be positive, got {self.groups}")

    def key(self) -> dict[str, Any]:
        """Everything that changes the op's output, as JSON-able values (the bias by its bytes' hash)."""
        bias = None if self.bias is None else array_digest(self.bias)
        return {"kind": self.kind.value, "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "bias": bias}


@dataclass(frozen=True)
class AdaRoundConfig:
    """AdaRound's settings.

    Attributes:
        iterations: Adam steps per layer. The paper runs 10k on a GPU; 500 keeps a small layer at a few
            tenths of a second on a CPU core and already recovers most of the gain (the rounding choice
            is binary and starts at nearest rounding's fractional parts).
        batch_size: calibration *samples* per step (each with all its output positions, so a conv step
            sees ``batch_size * H * W`` output vectors). Samples, not positions, because whole samples
            keep the spatial correlation of the inputs the rounding has to account for, and a batch is a
            plain slice of the layer's inputs.
        reg_weight: lambda of the rounding regulariser ``sum(1 - |2 h(V) - 1|^beta)``.
        beta_start, beta_end: the regulariser's exponent, annealed linearly after the warm-up (high beta
            only pushes values near 0.5; low beta pushes every value to 0 or 1).
        warmup: fraction of the iterations without the regulariser (the reconstruction alone).
        lr: Adam's learning rate on V.
    """

    iterations: int = ADAROUND_ITERATIONS
    batch_size: int = ADAROUND_BATCH_SIZE
    reg_weight: float = ADAROUND_REG_WEIGHT
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    lr: float = 1e-2

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1:
            raise ValueError("iterations and batch_size must be positive")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction in [0, 1), got {self.warmup}")
        if self.reg_weight < 0 or self.lr <= 0 or self.beta_start <= 0 or self.beta_end <= 0:
            raise ValueError("reg_weight must be >= 0, lr and the betas > 0")

    @classmethod
    def from_scheme(cls, scheme: QuantScheme) -> AdaRoundConfig:
        """The settings a quantization scheme asks for (``--adaround-iterations``, ``--adaround-batch-size``,
        ``--adaround-reg``); the others are the defaults."""
        return cls(iterations=scheme.adaround_iterations, batch_size=scheme.adaround_batch_size,
                   reg_weight=float(scheme.adaround_reg_weight))

    def key(self) -> dict[str, Any]:
        """The settings as JSON-able values (a cache key part)."""
        return asdict(self)

    def beta(self, step: int) -> float | None:
        """The regulariser's exponent at ``step`` (0-based), or None during the warm-up (no regulariser):
        ``beta_start`` at the first step after the warm-up, ``beta_end`` at the last, linear between."""
        start = int(self.warmup * self.iterations)
        if step < start:
            return None
        progress = min((step - start) / max(self.iterations - 1 - start, 1), 1.0)
        return self.beta_end + (self.beta_start - self.beta_end) * (1.0 - progress)


#: Part of every key: bump when the algorithm changes what it returns for the same content.
ALGORITHM_VERSION = 2


def array_digest(values: np.ndarray) -> str:
    """A content hash of an array (dtype, shape and bytes)."""
    array = np.ascontiguousarray(values)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def adaround_key(weight: np.ndarray, params: QuantParams, axis: int, layer: LayerSpec, inputs: np.ndarray,
                 targets: np.ndarray | None, config: AdaRoundConfig, seed: int) -> str:
    """The content address of one AdaRound result: the same content gives the same integers."""
    content = {
        "version": ALGORITHM_VERSION,
        "weight": array_digest(weight),
        "scale": array_digest(np.asarray(params.scale, np.float64)),
        "zero_point": array_digest(np.asarray(params.zero_point, np.float64)),
        "qmin": params.qmin, "qmax": params.qmax, "axis": axis,
        "layer": layer.key(),
        "inputs": array_digest(inputs),
        "targets": None if targets is None else array_digest(targets),
        "config": config.key(),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


__all__ = ["ALGORITHM_VERSION", "AdaRoundConfig", "LayerSpec", "ROUNDABLE", "adaround_key", "array_digest"]
