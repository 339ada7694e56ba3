"""Property tests over a run directory with one file corrupted, then ``mixq report`` and a resume.

Each example copies a finished run, corrupts one of its files (truncated, bytes flipped, replaced by
wrongly typed JSON or by non-UTF-8 bytes, or a directory in its place), then runs ``mixq report RUN``,
``mixq search ... --out RUN`` (a resume) and ``mixq report RUN`` again. Every call must end in success or
one user error (exit 2), never a traceback or exit 1/3, and nothing outside RUN may change.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fuzzkit import examples, run, snapshot
from hypothesis import example, given
from hypothesis import strategies as st

FILES = ["config.json", "curve.json", "evaluations.json", "graph.json", "measurement_key.json",
         "measurements.jsonl", "plan.json", "sensitivity.json", "timings.json"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**25, 10**25) | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)


@dataclass(frozen=True)
class Corruption:
    """One way to damage a file: ``mode`` and what it needs (a cut point, byte edits, new content)."""

    mode: str
    cut: float = 0.5
    edits: tuple[tuple[float, int], ...] = ()
    content: bytes = b""

    def apply(self, path: Path) -> None:
        data = path.read_bytes()
        if self.mode == "truncate":
            path.write_bytes(data[: int(len(data) * self.cut)])
        elif self.mode == "flip":
            out = bytearray(data)
            for where, value in self.edits:
                if out:
                    out[min(int(where * len(out)), len(out) - 1)] = value
            path.write_bytes(bytes(out))
        elif self.mode == "directory":
            path.unlink()
            path.mkdir()
        else:  # "replace": wrongly typed JSON or non-UTF-8 bytes
            path.write_bytes(self.content)


CORRUPTIONS = st.one_of(
    st.builds(Corruption, st.just("truncate"), cut=st.floats(0, 1)),
    st.builds(Corruption, st.just("flip"), edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                          min_size=1, max_size=4).map(tuple)),
    st.builds(Corruption, st.just("replace"), content=JSON.map(lambda v: json.dumps(v).encode())),
    st.builds(Corruption, st.just("replace"), content=st.binary(max_size=16).map(lambda b: b"\xff\xfe" + b)),
    st.just(Corruption("directory")),
)


def _search(data: Path, out: Path) -> list[str]:
    return ["search", "tiny-cnn", "--data", str(data), "--budget", "bops<=0.5", "--num-samples", "4",
            "--out", str(out), "-q", "--no-report"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished run on 4 samples of 8x8 (built once; every example works on a copy)."""
    root = tmp_path_factory.mktemp("finished")
    data = root / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), y=rng.integers(0, 10, 4))
    outcome = run(_search(data, root / "run"))
    assert outcome.code == 0, outcome.err
    assert sorted(p.name for p in (root / "run").iterdir() if p.is_file() and not p.name.startswith(".")) == FILES
    return data, root / "run"


def _corrupted_copy(finished: tuple[Path, Path], root: Path, name: str, corruption: Corruption) -> tuple[Path, Path]:
    data, base = finished
    shutil.copy(data, root / "data.npz")
    shutil.copytree(base, root / "run")
    corruption.apply(root / "run" / name)
    return root / "data.npz", root / "run"


@pytest.mark.parametrize("name", FILES)
@examples(3)
@given(CORRUPTIONS)
@example(Corruption("directory"))
@example(Corruption("replace", content=b"\xff\xfe\x00"))
def test_resume_over_a_corrupt_run_file_gives_a_result_or_a_user_error(finished: tuple[Path, Path], name: str,
                                                                       corruption: Corruption) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        data, out = _corrupted_copy(finished, root, name, corruption)
        before = snapshot(root, out)
        run(_search(data, out)).check()
        run(["report", str(out), "--no-png"]).check()
        assert snapshot(root, out) == before, "a write outside --out"


@pytest.mark.parametrize("name", FILES)
@examples(3)
@given(CORRUPTIONS)
@example(Corruption("directory"))
@example(Corruption("replace", content=b"\xff\xfe\x00"))
def test_report_of_a_corrupt_run_gives_a_report_or_a_user_error(finished: tuple[Path, Path], name: str,
                                                                corruption: Corruption) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        _, out = _corrupted_copy(finished, root, name, corruption)
        before = snapshot(root, out)
        run(["report", str(out), "--no-png"]).check()
        assert snapshot(root, out) == before, "a write outside --out"
