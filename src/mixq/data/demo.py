"""Demo images: the colour photos bundled with scikit-image, so ``mixq demo`` needs no download.

skimage is located, not imported: importing it costs seconds and pulls in scipy submodules we do not
need; only its ``data`` folder of files is used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image

from mixq.data.dataset import ImageDataset
from mixq.data.preprocess import Preprocess
from mixq.errors import BackendUnavailableError, DataError

DEMO_HINT = 'pip install "mixq[demo]"'

# Natural colour photos first; the order is fixed so calibration on the first N is reproducible.
DEMO_FILES = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "logo.png", "color.png",
)


def demo_images_dir() -> Path:
    """scikit-image's ``data`` folder, found from its package spec without importing it."""
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "data"
        if folder.is_dir():
            return folder
    raise BackendUnavailableError(f"the demo images come with scikit-image, which is not installed: {DEMO_HINT}")


def demo_files() -> list[Path]:
    """The demo photos present in the installed scikit-image that are colour (RGB or RGBA)."""
    folder = demo_images_dir()
    found = []
    for name in DEMO_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            with Image.open(path) as img:
                if img.mode in ("RGB", "RGBA"):
                    found.append(path)
        except OSError:
            continue
    if not found:
        raise DataError(f"no demo photos found in {folder}: reinstall scikit-image ({DEMO_HINT})")
    return found


def demo_dataset(preprocess: Preprocess | None) -> ImageDataset:
    """The demo photos as an unlabeled data set; they differ in size, so give a resize and crop."""
    dataset = ImageDataset(demo_files(), preprocess)
    dataset.check()
    return dataset
