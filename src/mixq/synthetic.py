"""``--data synthetic``: distilled calibration data for a search, reused from the run directory on a resume.

The inputs are distilled once (``Backend.synthesize_calibration``, ZeroQ) and stored in ``RUN/synthetic.npz``
with the settings that made them, so a resumed run calibrates on exactly the same samples (its stored
measurements depend on them) even where a framework's float arithmetic differs between runs or machines.
The file is an ordinary ``.npz`` with ``x``: ``mixq eval``/``export`` read it with ``--data RUN/synthetic.npz``.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixq import backends
from mixq.backends.base import Progress
from mixq.core.synthetic import SyntheticData
from mixq.data.dataset import ArrayDataset

logger = logging.getLogger(__name__)

#: The distilled samples in the run directory (``x``: float inputs; ``record``: the settings, as JSON).
FILE = "synthetic.npz"
#: What the run records as ``config.json``'s ``data`` for a search on distilled inputs.
DATA = "synthetic"


@dataclass(frozen=True)
class Synthesized:
    """Distilled samples and what made them (recorded in ``config.json`` and ``synthetic.npz``)."""

    samples: np.ndarray
    record: Mapping[str, Any]
    reused: bool  # read back from the run directory rather than distilled now

    @property
    def dataset(self) -> ArrayDataset:
        return ArrayDataset(self.samples, source="synthetic (ZeroQ)")

    def npz_bytes(self) -> bytes:
        """``synthetic.npz`` as bytes (written atomically by the run directory)."""
        buffer = io.BytesIO()
        np.savez(buffer, x=self.samples, record=np.asarray(json.dumps(dict(self.record), sort_keys=True)))
        return buffer.getvalue()


def synthesize(model: object, request: SyntheticData, samples: int, seed: int, threads: int | None,
               run_dir: str | Path | None, progress: Progress | None = None) -> Synthesized:
    """The distilled samples: read from ``run_dir`` when it holds a set made with the same settings, else
    distilled by the model's backend."""
    record = request.record(samples, seed)
    cached = _cached(Path(run_dir) / FILE, record) if run_dir is not None else None
    if cached is not None:
        logger.info("reusing the synthetic calibration data in %s", Path(str(run_dir)) / FILE)
        return Synthesized(cached, record, True)
    backend = backends.resolve(model)
    if threads is not None:
        backend.set_threads(threads)
    x = backends.synthesize_calibration(backend, model, request.shape, samples, request.settings, seed, progress)
    return Synthesized(np.ascontiguousarray(x, dtype=np.float32), record, False)


def _cached(path: Path, record: Mapping[str, Any]) -> np.ndarray | None:
    """The stored samples if ``path`` holds a readable set made with ``record``'s settings (else None: a
    damaged or different file is distilled again and replaced)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            stored_record = json.loads(str(stored["record"]))
            x = np.asarray(stored["x"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        logger.warning("ignoring %s (%s); the synthetic data is distilled again", path, exc)
        return None
    wanted = json.loads(json.dumps(dict(record)))
    if stored_record != wanted:
        return None
    if x.dtype != np.float32 or x.shape != (int(record["samples"]), *record["shape"]) or not np.isfinite(x).all():
        logger.warning("ignoring %s (shape %s, %s); the synthetic data is distilled again", path, x.shape, x.dtype)
        return None
    return x
