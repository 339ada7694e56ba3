"""Quality of a quantized model's outputs against the float teacher (and labels, when given)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from mixq.core.tables import nsr_to_db


def per_sample_nsr(reference: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Noise-to-signal ratio of each sample: E[e^2] / E[F^2] over the sample's outputs.

    Pandey et al., eq. 3 averages the per-sample *signal-to-noise* ratio; a sample whose noise is
    zero would make that average infinite, so phase 1 keeps per-sample ratios and averages them
    with :func:`sqnr_db` instead.
    """
    ref = reference.reshape(reference.shape[0], -1).astype(np.float64)
    err = ref - output.reshape(output.shape[0], -1).astype(np.float64)
    signal = np.mean(ref * ref, axis=1)
    noise = np.mean(err * err, axis=1)
    nsr: np.ndarray = noise / np.maximum(signal, 1e-30)
    return nsr


def sqnr_db_from_ratios(signal_over_noise_sum: float, count: int) -> float:
    """Eq. 3: 10 log10 of the mean per-sample signal/noise ratio."""
    if count == 0:
        return math.nan
    mean = signal_over_noise_sum / count
    return math.inf if math.isinf(mean) else 10.0 * math.log10(max(mean, 1e-30))


def signal_over_noise(reference: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Per-sample E[F^2] / E[e^2] (eq. 3's summand), capped so exact outputs stay finite."""
    nsr = per_sample_nsr(reference, output)
    ratios: np.ndarray = 1.0 / np.maximum(nsr, 1e-12)
    return ratios


def sqnr_db(reference: np.ndarray, output: np.ndarray) -> float:
    """Output SQNR in dB over a batch, as eq. 3 of Pandey et al. defines it."""
    ratios = signal_over_noise(reference, output)
    return sqnr_db_from_ratios(float(ratios.sum()), len(ratios))


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, kth=k - 1, axis=1)[:, :k]
    hits: np.ndarray = (top == labels[:, None]).any(axis=1)
    return hits


@dataclass(frozen=True)
class Quality:
    """Measured quality; fractions in [0, 1]. ``None`` where the data cannot tell.

    Attributes:
        n_samples: how many samples the figures average over.
        sqnr_db: output SQNR against the float model (eq. 3).
        agreement: fraction of samples whose top-1 class equals the float model's (label-free).
        top1/top5: accuracy against labels.
    """

    n_samples: int
    sqnr_db: float | None = None
    agreement: float | None = None
    top1: float | None = None
    top5: float | None = None

    def to_dict(self) -> dict[str, float | int]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, float | int]) -> Quality:
        """The inverse of :meth:`to_dict` (e.g. a quality kept in a JSON checkpoint).

        >>> Quality.from_dict(Quality(64, sqnr_db=21.5).to_dict())
        Quality(n_samples=64, sqnr_db=21.5, agreement=None, top1=None, top5=None)
        """
        metrics = {name: float(values[name]) for name in ("sqnr_db", "agreement", "top1", "top5") if name in values}
        return cls(int(values["n_samples"]), **metrics)


def measure_quality(output: np.ndarray, reference: np.ndarray | None, labels: np.ndarray | None) -> Quality:
    """All metrics that the inputs allow; classification metrics only for (N, classes) outputs."""
    n = output.shape[0]
    logits = output.reshape(n, -1)
    is_classifier = logits.shape[1] > 1
    agreement = sqnr = top1 = top5 = None
    if reference is not None:
        sqnr = sqnr_db(reference, output)
        if is_classifier:
            agreement = float(np.mean(reference.reshape(n, -1).argmax(1) == logits.argmax(1)))
    if labels is not None and is_classifier:
        top1 = float(np.mean(topk_hits(logits, labels, 1)))
        top5 = float(np.mean(topk_hits(logits, labels, 5)))
    return Quality(n_samples=n, sqnr_db=sqnr, agreement=agreement, top1=top1, top5=top5)


__all__ = ["Quality", "measure_quality", "nsr_to_db", "per_sample_nsr", "signal_over_noise", "sqnr_db"]
