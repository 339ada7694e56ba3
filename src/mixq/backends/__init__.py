"""Backend registry. Backends load lazily so ``import mixq`` stays light."""

from __future__ import annotations

import importlib
import os
from typing import Any

from mixq.errors import BackendUnavailableError, UnsupportedModelError

_BACKENDS = {
    "torch": ("mixq.backends.torch.backend", "TorchBackend", "torch"),
    "onnx": ("mixq.backends.onnx.backend", "OnnxBackend", "onnx"),
}


def get_backend(name: str) -> Any:
    module_name, class_name, extra = _BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {name} backend needs {exc.name or 'a missing package'}: pip install \"mixq[{extra}]\""
        ) from None
    return getattr(module, class_name)()


def resolve(model: object) -> Any:
    """The backend that accepts ``model`` (chosen once, at the entry point)."""
    if type(model).__module__.startswith("torch") or _is_torch_module(model):
        return get_backend("torch")
    if _is_onnx_model(model):
        return get_backend("onnx")
    raise UnsupportedModelError(
        f"mixq cannot quantize a {type(model).__name__}: give a torch nn.Module, a .onnx file or an onnx.ModelProto"
    )


def _is_torch_module(model: object) -> bool:
    return any(cls.__module__ == "torch.nn.modules.module" and cls.__name__ == "Module" for cls in type(model).__mro__)


def _is_onnx_model(model: object) -> bool:
    """A ``.onnx`` path or an ``onnx.ModelProto``, recognised without importing onnx."""
    if isinstance(model, (str, os.PathLike)):
        return str(model).lower().endswith(".onnx")
    return type(model).__name__ == "ModelProto" and type(model).__module__.startswith("onnx")


def list_backends() -> list[str]:
    return sorted(_BACKENDS)
