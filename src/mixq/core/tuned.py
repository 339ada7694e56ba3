"""Quantizers learned for one plan after the search: what block reconstruction (BRECQ) and label-free
distillation (KD with learnable step sizes) hand to the simulation, the evaluation and the export.

A search picks one precision per group; a tuning step then learns, for that plan only, better integer
weights (and, for distillation, weight and activation step sizes). The result replaces the calibrated
quantizers of the tuned (weight, bits) and (tensor, bits) pairs everywhere they are used, through one
place: :meth:`mixq.core.quantize.WeightQuantizer.tune` and :meth:`mixq.core.quantize.ActivationRanges.tune`.
It is stored next to the plan (``RUN/tuned.npz``, named by the plan's ``tuned`` field) so that ``mixq eval``
and ``mixq export`` of that plan carry the tuned quantizers, not freshly calibrated ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixq.atomic import write_atomic
from mixq.core.ranges import QuantParams
from mixq.errors import ConfigError

#: The file a run stores its tuned quantizers in (the plan's ``tuned`` field names it).
TUNED_FILE = "tuned.npz"


@dataclass(frozen=True)
class TunedWeight:
    """A weight's tuned integers (int32, the weight's layout) on the grid of ``params``."""

    integers: np.ndarray
    params: QuantParams


@dataclass(frozen=True)
class TunedQuantizers:
    """Learned quantizers of one plan.

    Attributes:
        method: what learned them (``brecq``, ``kd``), for reports.
        weights: by (weight key, weight bits).
        activations: by (tensor name, activation bits): learned step sizes (and zero-points).
        details: JSON-able facts of the run (steps, loss before and after, seconds) for the report.
    """

    method: str
    weights: Mapping[tuple[str, int], TunedWeight] = field(default_factory=dict)
    activations: Mapping[tuple[str, int], QuantParams] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """One ``.npz`` (no pickles), written atomically."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        index: dict[str, Any] = {"method": self.method, "details": dict(self.details), "weights": [],
                                 "activations": []}
        for n, ((key, bits), tuned) in enumerate(sorted(self.weights.items())):
            index["weights"].append({"key": key, "bits": bits, "qmin": tuned.params.qmin, "qmax": tuned.params.qmax})
            arrays[f"w{n}_q"] = np.asarray(tuned.integers, np.int32)
            arrays[f"w{n}_scale"] = np.asarray(tuned.params.scale, np.float64)
            arrays[f"w{n}_zero"] = np.asarray(tuned.params.zero_point, np.float64)
        for n, ((tensor, bits), params) in enumerate(sorted(self.activations.items())):
            index["activations"].append({"tensor": tensor, "bits": bits, "qmin": params.qmin, "qmax": params.qmax})
            arrays[f"a{n}_scale"] = np.asarray(params.scale, np.float64)
            arrays[f"a{n}_zero"] = np.asarray(params.zero_point, np.float64)
        arrays["index"] = np.frombuffer(json.dumps(index).encode(), np.uint8)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)  # type: ignore[arg-type]

        write_atomic(path, write)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TunedQuantizers:
        """A file :meth:`save` wrote; anything else is one ConfigError naming the file."""
        path = Path(path)
        fix = "rerun the search with the tuning option, or remove the plan's 'tuned' field to use calibrated quantizers"
        try:
            with np.load(path, allow_pickle=False) as data:
                index = json.loads(bytes(data["index"]).decode())
                weights = {}
                for n, item in enumerate(index["weights"]):
                    params = QuantParams(data[f"w{n}_scale"], data[f"w{n}_zero"], int(item["qmin"]), int(item["qmax"]))
                    weights[(str(item["key"]), int(item["bits"]))] = TunedWeight(data[f"w{n}_q"].astype(np.int32),
                                                                                 params)
                activations = {}
                for n, item in enumerate(index["activations"]):
                    activations[(str(item["tensor"]), int(item["bits"]))] = QuantParams(
                        data[f"a{n}_scale"], data[f"a{n}_zero"], int(item["qmin"]), int(item["qmax"]))
                return cls(str(index["method"]), weights, activations, dict(index.get("details", {})))
        except FileNotFoundError:
            raise ConfigError(f"tuned quantizers file {path} does not exist; {fix}") from None
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"tuned quantizers file {path} is not readable ({exc}); {fix}") from None


__all__ = ["TUNED_FILE", "TunedQuantizers", "TunedWeight"]
