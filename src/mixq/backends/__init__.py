"""The backend registry: the only way code outside ``mixq.backends`` reaches a framework.

Backends are lazy ``module:class`` entries of :data:`BACKENDS`, so ``import mixq`` stays light and a
framework is imported only when a model of it arrives. :func:`resolve` picks a model's backend once, at
the entry point; everything after talks to the ``Backend`` protocol (``mixq.backends.base``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mixq.core.finetune import KdSettings
from mixq.core.reconstruction import BrecqConfig
from mixq.errors import BackendUnavailableError, CapabilityError, UnsupportedModelError
from mixq.registry import Registry

if TYPE_CHECKING:
    import numpy as np

    from mixq.backends.base import Backend, Progress
    from mixq.core.synthetic import SyntheticSettings

#: Every backend, by name; third parties add theirs under the ``mixq.backends`` entry-point group.
BACKENDS: Registry[Backend] = Registry("backend", group="mixq.backends")
BACKENDS.add("torch", "mixq.backends.torch.backend:TorchBackend",
             help="PyTorch nn.Module (pip install \"mixq[torch]\")")
BACKENDS.add("onnx", "mixq.backends.onnx.backend:OnnxBackend",
             help=".onnx file or onnx.ModelProto, run by ONNX Runtime (pip install \"mixq[onnx]\")")

#: The extra that installs a built-in backend's framework (for the error when it is missing).
_EXTRAS = {"torch": "torch", "onnx": "onnx"}


#: Weight-rounding optimisers other than nearest, by ``QuantScheme.weight_rounding``: lazy
#: ``"module:function"`` entries, so a backend reaches an optimiser that another backend's framework runs
#: (the ONNX backend uses torch's AdaRound) without importing that backend; both built-in backends reach it
#: through :class:`mixq.backends.rounder.AdaRounder`. Each function has the signature
#: of :func:`mixq.backends.torch.adaround.adaround`.
ROUNDINGS: Registry[Any] = Registry("weight rounding")
ROUNDINGS.add("adaround", "mixq.backends.torch.adaround:adaround",
              help="AdaRound (Nagel et al. 2020), optimised with torch (pip install \"mixq[torch]\")")


#: Post-search tuning steps of the chosen plan (``--tune NAME``, ``SearchConfig.tuning``), by name: lazy
#: ``"module:class"`` entries implementing :class:`mixq.backends.base.Tuner`, each created with its settings
#: dataclass and tagged with the backends it runs on. Third parties add theirs under ``mixq.tuners``.
TUNERS: Registry[Any] = Registry("tuner", group="mixq.tuners")
TUNERS.add("kd", "mixq.backends.torch.finetune:KdTuner", config=KdSettings, tags={"torch"},
           help="label-free distillation from the float model: float weights and LSQ step sizes of the plan "
                "learned with Adam on the calibration samples (torch models)")
TUNERS.add("brecq", "mixq.backends.torch.brecq:BrecqTuner", config=BrecqConfig, tags={"torch"},
           help="BRECQ block reconstruction (Li et al. 2021): each block's AdaRound roundings learned jointly "
                "against the float block's outputs, label-free, optionally with QDrop (torch models)")


def require_tuner(backend: Backend, name: str) -> None:
    """Refuse, before any work, a tuning step the backend cannot run (the entry's tags name its backends)."""
    entry = TUNERS.get(name)
    if backend.name not in entry.tags:
        runs_on = " or ".join(sorted(entry.tags)) or "no built-in backend"
        fix = (": load the model as a torch nn.Module (file.py:factory or package.module:factory) to fine-tune it, "
               "or search without it" if "torch" in entry.tags else ": search without it")
        raise CapabilityError(f"tuning step {name!r} needs a {runs_on} model, and this is a {backend.name} model{fix}")


def weight_rounding(name: str) -> Any:
    """The optimiser function of weight rounding ``name``; a missing framework is one ``BackendUnavailableError``."""
    try:
        return ROUNDINGS.get(name).load()
    except ImportError as exc:
        raise BackendUnavailableError(
            f"--rounding {name} needs {exc.name or 'a missing package'} to optimise the rounding: "
            "pip install \"mixq[torch]\"") from None


#: A layer's input moments from its inputs (the mean patch for bias correction, the second moment for the
#: output-aware weight range), computed with torch's patch view for every backend; a lazy entry for the same
#: reason as :data:`ROUNDINGS`. Signature of :func:`mixq.backends.torch.reconstruction_loss.layer_moment`.
MOMENTS: Registry[Any] = Registry("layer moment")
MOMENTS.add("patches", "mixq.backends.torch.reconstruction_loss:layer_moment",
            help="moments of the op's input patches, computed with torch (pip install \"mixq[torch]\")")


def layer_moment() -> Any:
    """The layer-moment function (:data:`MOMENTS`); a missing torch is one ``BackendUnavailableError``."""
    try:
        return MOMENTS.get("patches").load()
    except ImportError as exc:
        raise BackendUnavailableError(
            f"--bias-correction and --weight-range output need {exc.name or 'a missing package'} to compute the "
            "layers' input moments: pip install \"mixq[torch]\"") from None


def require_rounding(backend: Backend, rounding: str) -> None:
    """Refuse, before any work, a weight rounding the backend cannot apply (its ``weight_roundings``
    attribute; a backend without one rounds to nearest only)."""
    supported = getattr(backend, "weight_roundings", ("nearest",))
    if rounding not in supported:
        name = "AdaRound" if rounding == "adaround" else f"--rounding {rounding}"
        hint = ("; the built-in backends (torch, onnx) can: give the model as a torch nn.Module or an .onnx file"
                if rounding == "adaround" else "")
        raise CapabilityError(f"the {backend.name} backend cannot round weights with {name} (it rounds with "
                              f"{', '.join(supported)}){hint}")


def synthesize_calibration(backend: Backend, model: object, shape: tuple[int, ...], samples: int,
                           settings: SyntheticSettings, seed: int, progress: Progress | None = None) -> np.ndarray:
    """The backend's distilled calibration inputs (ZeroQ); a plug-in backend without the capability is refused
    like a built-in one that lacks it."""
    method = getattr(backend, "synthesize_calibration", None)
    if method is None:
        raise CapabilityError(f"the {backend.name} backend cannot synthesise calibration data (--data synthetic "
                              "needs a model with batch-norm statistics): give real images (--data FOLDER)")
    samples_out: np.ndarray = method(model, shape, samples, settings, seed, progress)
    return samples_out


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
