"""The backend registry: the only way code outside ``mixq.backends`` reaches a framework.

Backends are lazy ``module:class`` entries of :data:`BACKENDS`, so ``import mixq`` stays light and a
framework is imported only when a model of it arrives. :func:`resolve` picks a model's backend once, at
the entry point; everything after talks to the ``Backend`` protocol (``mixq.backends.base``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mixq.errors import BackendUnavailableError, UnsupportedModelError
from mixq.registry import Registry

if TYPE_CHECKING:
    from mixq.backends.base import Backend

#: Every backend, by name; third parties add theirs under the ``mixq.backends`` entry-point group.
BACKENDS: Registry[Backend] = Registry("backend", group="mixq.backends")
BACKENDS.add("torch", "mixq.backends.torch.backend:TorchBackend",
             help="PyTorch nn.Module (pip install \"mixq[torch]\")")
BACKENDS.add("onnx", "mixq.backends.onnx.backend:OnnxBackend",
             help=".onnx file or onnx.ModelProto, run by ONNX Runtime (pip install \"mixq[onnx]\")")

#: The extra that installs a built-in backend's framework (for the error when it is missing).
_EXTRAS = {"torch": "torch", "onnx": "onnx"}


def get_backend(name: str) -> Backend:
    """A backend by name; a missing framework is one ``BackendUnavailableError`` naming the extra to install."""
    try:
        return BACKENDS.create(name)
    except ImportError as exc:
        extra = _EXTRAS.get(name, name)
        raise BackendUnavailableError(
            f"the {name} backend needs {exc.name or 'a missing package'}: pip install \"mixq[{extra}]\""
        ) from None


def resolve(model: object) -> Backend:
    """The backend that accepts ``model`` (chosen once, at the entry point), recognised without importing
    any framework."""
    if type(model).__module__.startswith("torch") or _is_torch_module(model):
        return get_backend("torch")
    if _is_onnx_model(model):
        return get_backend("onnx")
    for name in BACKENDS.names():  # third-party backends say themselves what they take
        if name not in _EXTRAS:
            backend = get_backend(name)
            if backend.accepts(model):
                return backend
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
    return sorted(BACKENDS.names())
