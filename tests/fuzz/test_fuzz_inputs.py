"""Property tests over user files read by the CLI: config files (YAML/TOML) and labels.csv.

Any file gives a run or a user error (exit 2, one line), never a traceback or exit 1/3, and nothing
is written outside ``--out``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fuzzkit import examples, run, snapshot
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from mixq.data import load_data
from mixq.errors import MixqError

SLOW = examples(20)
FAST = examples(80)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8), y=rng.integers(0, 10, 4))
    return path


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from([10**23, -1, 0.5]),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                    st.sampled_from(["bops<=0.5", "w8a8,fp32", "inf", "nan", "-1", "8", "greedy", "evolution"]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.text(max_size=4), SCALARS, max_size=2))
KEYS = st.sampled_from(["num-samples", "num_samples", "budget", "candidates", "seed", "cache-mb", "preprocess",
                        "solver", "strategy", "eval-samples", "uniform", "plan", "solver_options", "search", "bogus",
                        "per_tensor_weights", "labels"])
CONFIG = st.dictionaries(KEYS, VALUES, max_size=4)


def _toml_value(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None:
        return json.dumps(json.dumps(value))  # TOML has no null: a string of the JSON
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    return json.dumps(value) if isinstance(value, str) else str(value)


def _content(kind: str, config: dict[str, Any], junk: bytes) -> bytes:
    if kind == "yaml":
        return yaml.safe_dump(config).encode()
    if kind == "toml":
        return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in config.items()).encode()
    return junk


@SLOW
@given(st.sampled_from(["yaml", "toml", "bytes"]), st.sampled_from([".yaml", ".toml"]), CONFIG, st.binary(max_size=40),
       st.booleans())
@example("bytes", ".yaml", {}, b"\xff\xfenum_samples: 4\n", True)
@example("yaml", ".yaml", {"cache-mb": float("inf"), "budget": ["bops<=0.5"]}, b"", False)
@example("toml", ".toml", {"cache-mb": float("nan")}, b"", True)
def test_any_config_file_runs_or_is_a_user_error(npz: Path, kind: str, suffix: str, config: dict[str, Any],
                                                 junk: bytes, typed_budget: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / f"config{suffix}"
        path.write_bytes(_content(kind, config, junk))
        out = root / "run"
        before = snapshot(root, out)
        budget = ["--budget", "bops<=0.5"] if typed_budget else []  # else the file's budget (if any) is read
        run(["search", "tiny-cnn", "--data", str(npz), "--config-file", str(path), "--out", str(out), "-q",
             "--no-report", *budget]).check()
        assert snapshot(root, out) == before


def _images(folder: Path) -> Path:
    images = folder / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for index in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"img{index}.png")
    (folder / "outside.png").write_bytes((images / "img0.png").read_bytes())
    return images


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _images(tmp_path_factory.mktemp("labels"))


NAMES = st.sampled_from(["img0.png", "img1.png", "img2.png", "img3.png", "", "missing.png", " img1.png"])
BAD_NAMES = st.sampled_from(["../outside.png", "/etc/passwd", "sub/../img0.png", "img0.png\x00"])
INDICES = st.one_of(st.integers(-3, 20).map(str), st.sampled_from(["1e3", "", "x", "3.0", str(10**23), "٣", "-0"]))
ROWS = st.lists(st.tuples(NAMES, INDICES), max_size=6)
HEADERS = st.sampled_from(["file,class_index", "class_index,file", "file", " file , class_index ", "", "a,b"])


def _labels_text(header: str, rows: list[tuple[str, str]]) -> str:
    return "\n".join([header, *(f"{name},{index}" for name, index in rows)]) + "\n"


def _load(image_folder: Path, content: bytes) -> None:
    """load_data on a copy of the folder with this labels.csv: a data set whose labels are sane, or a user error."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "images"
        shutil.copytree(image_folder, copy)
        (copy / "labels.csv").write_bytes(content)
        try:
            dataset = load_data(copy)
        except MixqError:
            return
        assert len(dataset) > 0
        labels = dataset.labels
        assert labels is not None and (labels >= 0).all()


@FAST
@given(HEADERS, ROWS)
def test_labels_csv_with_plain_names_gives_a_dataset_or_a_user_error(image_folder: Path, header: str,
                                                                     rows: list[tuple[str, str]]) -> None:
    _load(image_folder, _labels_text(header, rows).encode())


@FAST
@given(HEADERS, st.lists(st.tuples(st.one_of(NAMES, BAD_NAMES), INDICES), max_size=6), st.binary(max_size=8))
@example("file,class_index", [("img0.png", str(10**23)), ("img1.png", "0"), ("img2.png", "0"), ("img3.png", "0")], b"")
@example("file,class_index", [("../outside.png", "0"), ("img0.png", "0"), ("img1.png", "0"), ("img2.png", "0"),
                              ("img3.png", "0")], b"")
def test_any_labels_csv_gives_a_dataset_inside_the_folder_or_a_user_error(
        image_folder: Path, header: str, rows: list[tuple[str, str]], tail: bytes) -> None:
    _load(image_folder, _labels_text(header, rows).encode() + tail)
    # a labels.csv naming a file outside the folder must be refused, whether or not that file exists
    if any(name in ("../outside.png", "/etc/passwd") for name, _ in rows):
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / "images"
            shutil.copytree(image_folder, copy)
            (copy / "labels.csv").write_bytes(_labels_text(header, rows).encode())
            with pytest.raises(MixqError):
                load_data(copy)
