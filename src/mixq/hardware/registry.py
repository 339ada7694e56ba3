"""Hardware targets by name (``--hardware NAME``); a file path gives a description of one's own.

A third party ships a target under the ``mixq.hardware`` entry-point group: a function that
returns a :class:`~mixq.hardware.spec.Hardware` (e.g. ``Hardware.from_dict(yaml.safe_load(TEXT))``).
"""

from __future__ import annotations

from collections.abc import Callable

import yaml

from mixq.hardware import builtin
from mixq.hardware.spec import Hardware
from mixq.registry import Registry


def described(name: str, text: str) -> Callable[[], Hardware]:
    """A factory reading a built-in description (parsed when the target is asked for, not at import)."""

    def load() -> Hardware:
        return Hardware.from_dict(yaml.safe_load(text), f"built-in hardware {name!r}")

    load.__name__ = load.__qualname__ = f"builtin_{name.replace('-', '_')}"
    return load


#: Hardware targets by name.
HARDWARE: Registry[Hardware] = Registry("hardware target", "mixq.hardware")
HARDWARE.add("generic", described("generic", builtin.GENERIC),
             help="any bit-width runs; candidates as given, BOPs as the cost")
HARDWARE.add("onnxruntime-cpu", described("onnxruntime-cpu", builtin.ONNXRUNTIME_CPU),
             help="ONNX Runtime's CPU provider: w8a8 integer kernels or fp32")
HARDWARE.add("openvino-cpu", described("openvino-cpu", builtin.OPENVINO_CPU),
             help="OpenVINO's CPU plugin on the QDQ file: w8a8 integer kernels (ConvTranspose too) or fp32")
HARDWARE.add("npu-w4a8-w8a8-w8a16", described("npu-w4a8-w8a8-w8a16", builtin.NPU_W4A8_W8A8_W8A16),
             help="an accelerator with W4A8, W8A8 and W8A16 kernels, the search space of Pandey et al.")
