"""Range checks for numbers from flags and settings: finite, positive where it matters, seeds numpy accepts.

A flag's value is one number, so a pydantic model would add nothing over a clear comparison; what matters
is that NaN and infinity, which pass ``x <= 0`` checks, are refused with the flag's name and the fix.
"""

from __future__ import annotations

import math

from mixq.errors import ConfigError

#: numpy's generators take seeds in 0..2^32-1 (``RandomState``); one range for every solver.
MAX_SEED = 2**32 - 1


def positive_finite(value: float, flag: str, example: str) -> float:
    """``value`` when it is a finite number above 0; otherwise a ConfigError naming ``flag`` and an example."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{flag} must be a finite number above 0, got {value!r}: e.g. {flag} {example}")
    return float(value)


def seed(value: int, flag: str = "--seed") -> int:
    """``value`` when it is a whole number in 0..2^32-1 (what numpy's generators accept)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{flag} must be a whole number from 0 to {MAX_SEED}, got {value!r}: e.g. {flag} 0")
    return value
