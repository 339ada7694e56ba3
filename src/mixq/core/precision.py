"""Precisions: the hardware kernels a quantizer group can run as (``w4a8``, ``w8a16``, ``fp16``).

A precision names bit-widths only. How a tensor is quantized at that width (symmetric or not,
per channel or per tensor, which range setting) is a separate :class:`QuantScheme`, because a
target's kernels are fixed while the scheme is a user choice that applies to every precision.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any

from mixq.errors import ConfigError

MIN_BITS = 2
MAX_BITS = 16

_INT_PATTERN = re.compile(r"^w(\d+)a(\d+)$")
_FLOAT_NAMES = {"fp16": 16, "fp32": 32}


@dataclass(frozen=True)
class Precision:
    """Bit-widths of one kernel: integer weights x integer activations, or a float fallback.

    Attributes:
        weight_bits: bits of the weights (16 or 32 for the float fallbacks).
        act_bits: bits of the input activations (16 or 32 for the float fallbacks).
        is_float: True for ``fp16``/``fp32``: nothing is quantized to integers.
    """

    weight_bits: int
    act_bits: int
    is_float: bool = False

    def __post_init__(self) -> None:
        if self.is_float:
            if self.weight_bits != self.act_bits or self.weight_bits not in (16, 32):
                raise ConfigError(f"float precisions are fp16 or fp32, not {self.weight_bits}/{self.act_bits} bits")
            return
        for what, bits in (("weight", self.weight_bits), ("activation", self.act_bits)):
            if not MIN_BITS <= bits <= MAX_BITS:
                raise ConfigError(
                    f"{what} bit-width {bits} is outside {MIN_BITS}..{MAX_BITS}; "
                    "use fp16 or fp32 to keep a layer in float"
                )

    @classmethod
    def parse(cls, text: str) -> Precision:
        """Parse ``w4a8``, ``W8A16``, ``fp16`` or ``fp32``.

        >>> Precision.parse("w4a8")
        Precision(weight_bits=4, act_bits=8, is_float=False)
        >>> str(Precision.parse("FP16"))
        'fp16'
        """
        key = text.strip().lower()
        if key in _FLOAT_NAMES:
            bits = _FLOAT_NAMES[key]
            return cls(bits, bits, is_float=True)
        match = _INT_PATTERN.match(key)
        if match is None:
            raise ConfigError(
                f"unknown precision {text!r}: write wNaM (e.g. w4a8, w8a8, w8a16; N and M in "
                f"{MIN_BITS}..{MAX_BITS}), fp16 or fp32"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        if self.is_float:
            return f"fp{self.weight_bits}"
        return f"w{self.weight_bits}a{self.act_bits}"

    @property
    def bits_per_mac(self) -> int:
        """Weight bits times activation bits: the BOPs of one MAC (Pandey et al., eq. 5)."""
        return self.weight_bits * self.act_bits

    @property
    def keeps_float32(self) -> bool:
        """``fp32`` means: leave the op exactly as the float model has it."""
        return self.is_float and self.weight_bits == 32


def parse_candidates(text: str | Iterable[str | Precision]) -> tuple[Precision, ...]:
    """Parse a candidate list (``"w4a8,w8a8,w8a16"`` or an iterable), dropping duplicates.

    >>> [str(p) for p in parse_candidates("w8a8, w4a8,w8a8")]
    ['w8a8', 'w4a8']
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[Precision] = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        precision = item if isinstance(item, Precision) else Precision.parse(item)
        if precision not in out:
            out.append(precision)
    if not out:
        raise ConfigError("the candidate list is empty: give at least one precision, e.g. --candidates w4a8,w8a8,w8a16")
    return tuple(out)


#: How weights may round to their integer grid (``QuantScheme.weight_rounding``).
WEIGHT_ROUNDINGS = ("nearest", "adaround")
#: AdaRound's default steps per (layer, bits): ``mixq.core.rounding.AdaRoundConfig``'s default.
ADAROUND_ITERATIONS = 500
#: AdaRound's default calibration samples per step (when a layer's loss runs through the op itself).
ADAROUND_BATCH_SIZE = 32
#: AdaRound's default weight of the rounding regulariser (the paper's lambda).
ADAROUND_REG_WEIGHT = 0.01


class RangeMethod(str, Enum):
    """How a quantizer's clipping range is chosen from calibration values."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    #: weights only: per output channel, the clipping that minimises the layer's output error on the
    #: calibration inputs (``dW G dW^T``, ``G`` their second moment) rather than the weight's own MSE
    OUTPUT = "output"


@dataclass(frozen=True)
class QuantScheme:
    """How tensors are quantized at a given bit-width (the same for every precision).

    Attributes:
        weight_per_channel: one scale per output channel (default) or one per tensor.
        weight_symmetric: symmetric weights (zero-point 0), the usual integer-kernel format.
        act_symmetric: symmetric activations; asymmetric (default) suits post-ReLU tensors.
        weight_range: range setting for weights.
        act_range: range setting for activations.
        percentile: the percentile used by ``RangeMethod.PERCENTILE``.
        act_dynamic: activation ranges from each batch's own min/max at run time, as ONNX Runtime's
            dynamic quantization does (suits transformer MatMul/Gemm); calibration sets no range.
        weight_rounding: how weights round to their integer grid: ``nearest`` (default) or ``adaround``
            (AdaRound: per layer and weight bit-width, the up/down choice that best reconstructs the float
            layer's output on the calibration samples; label-free, cached on disk; ONNX and torch models).
            :meth:`to_dict` writes it only when it is not ``nearest``, so plans and run keys written
            before it existed are unchanged.
        adaround_iterations: AdaRound's optimisation steps per (layer, weight bit-width)
            (``mixq.core.rounding.AdaRoundConfig.iterations``); written by :meth:`to_dict` only when it is
            not the default.
        adaround_batch_size, adaround_reg_weight: AdaRound's samples per step and regulariser weight
            (``AdaRoundConfig.batch_size``, ``reg_weight``); written by :meth:`to_dict` only when not the default.
        bias_correction: empirical bias correction (Nagel et al. 2019): each quantized layer's bias absorbs
            the mean output shift ``(W - W~) E[x]`` its weight quantization causes on the calibration inputs
            (``mixq.core.bias_correction``); written by :meth:`to_dict` only when true.
    """

    weight_per_channel: bool = True
    weight_symmetric: bool = True
    act_symmetric: bool = False
    weight_range: RangeMethod = RangeMethod.MSE
    act_range: RangeMethod = RangeMethod.MSE
    percentile: float = 99.99
    act_dynamic: bool = False
    weight_rounding: str = "nearest"
    adaround_iterations: int = ADAROUND_ITERATIONS
    adaround_batch_size: int = ADAROUND_BATCH_SIZE
    adaround_reg_weight: float = ADAROUND_REG_WEIGHT
    bias_correction: bool = False

    def __post_init__(self) -> None:
        for name in ("weight_per_channel", "weight_symmetric", "act_symmetric", "act_dynamic", "bias_correction"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, numbers.Real):
            raise ConfigError(f"percentile must be a number in (50, 100], e.g. 99.99, got {self.percentile!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise ConfigError(f"weight_rounding must be one of {', '.join(WEIGHT_ROUNDINGS)}, "
                              f"got {self.weight_rounding!r}")
        for name in ("adaround_iterations", "adaround_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
        reg = self.adaround_reg_weight
        if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or not 0.0 <= reg < float("inf"):
            raise ConfigError(f"adaround_reg_weight must be a number >= 0 (default {ADAROUND_REG_WEIGHT}), got {reg!r}")
        object.__setattr__(self, "weight_range", RangeMethod(self.weight_range))
        object.__setattr__(self, "act_range", RangeMethod(self.act_range))
        if self.act_range is RangeMethod.OUTPUT:
            raise ConfigError("the output range method searches weight ranges only (it needs a layer's weight and "
                              "inputs): use it as the weight range (--weight-range output) and minmax, percentile "
                              "or mse for activations")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (range methods as their names), as plans and config files store them; the default
        ``weight_rounding`` and ``bias_correction`` are left out (plans and measurement keys of nearest
        rounding without bias correction stay as they were)."""
        out = asdict(self)
        out.update(weight_range=self.weight_range.value, act_range=self.act_range.value)
        if self.weight_rounding == "nearest":
            del out["weight_rounding"]
        defaults = {"adaround_iterations": ADAROUND_ITERATIONS, "adaround_batch_size": ADAROUND_BATCH_SIZE,
                    "adaround_reg_weight": ADAROUND_REG_WEIGHT}
        for name, default in defaults.items():
            if out[name] == default:
                del out[name]
        if not self.bias_correction:
            del out["bias_correction"]
        return out

    def with_rounding(self, rounding: str | None, iterations: int | None = None) -> QuantScheme:
        """This scheme with another weight rounding (None: unchanged), e.g. AdaRound applied to a plan that
        was searched with nearest rounding; ``iterations`` (None: this scheme's) with it."""
        if rounding is None:
            return self
        return replace(self, weight_rounding=rounding,
                       adaround_iterations=self.adaround_iterations if iterations is None else iterations)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantScheme:
        """The scheme stored by :meth:`to_dict`; unknown keys are refused, missing ones take defaults.

        >>> QuantScheme.from_dict({"act_range": "minmax"}).act_range
        <RangeMethod.MINMAX: 'minmax'>
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown quantization scheme settings {unknown}; known: {sorted(known)}")
        values = dict(data)
        for key in ("weight_range", "act_range"):
            if key in values:
                try:
                    values[key] = RangeMethod(values[key])
                except ValueError:
                    choices = ", ".join(m.value for m in RangeMethod)
                    raise ConfigError(f"{key} must be one of {choices}, got {values[key]!r}") from None
        return cls(**values)

