"""Demo images located in scikit-image's data folder without importing it."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from mixq.data import Preprocess, demo
from mixq.errors import BackendUnavailableError, DataError


def test_demo_dataset_uses_bundled_colour_photos() -> None:
    if importlib.util.find_spec("skimage") is None:
        pytest.skip("scikit-image not installed (pip install \"mixq[demo]\")")
    imported_before = "skimage" in sys.modules
    folder = demo.demo_images_dir()
    assert (folder / "astronaut.png").is_file()
    data = demo.demo_dataset(Preprocess(resize=40, crop=32))
    assert 5 <= len(data) <= len(demo.DEMO_FILES)
    assert data.names[0] == "astronaut.png" and "camera.png" not in data.names  # grayscale photos are left out
    x = data.load(0, len(data))
    assert x.shape == (len(data), 3, 32, 32) and x.std() > 0.05
    assert ("skimage" in sys.modules) == imported_before  # located, never imported
    with pytest.raises(DataError, match="--preprocess"):
        demo.demo_dataset(None)  # the photos differ in size


def test_missing_skimage_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "mixq\[demo\]"'):
        demo.demo_images_dir()
