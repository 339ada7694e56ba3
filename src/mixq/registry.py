"""One typed registry for every kind of plug-in: solvers, strategies, cost models, hardware targets,
backends, sensitivity metrics, tasks, runtimes, executors.

Adding a plug-in is a one-file change: decorate it with its kind's ``register`` and, from outside the
package, name it under the kind's entry-point group (``mixq.solvers``, ``mixq.metrics``, ...) in your
package metadata. The CLI builds its choices and help from :meth:`Registry.names` and each entry's
``help``; settings an entry takes are a dataclass (``config``) that config files map onto.

>>> colours: Registry[str] = Registry("colour")
>>> colours.add("red", lambda: "#f00", help="warm")
>>> colours.create("red")
'#f00'
>>> colours.names("r*")
['red']
>>> colours.get("rde")
Traceback (most recent call last):
...
mixq.errors.ConfigError: unknown colour 'rde'; did you mean 'red'? known: red
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from mixq.errors import ConfigError, PluginError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plug-in.

    Attributes:
        name: the registry key (what users type: ``--solver ilp``).
        target: the factory, or ``"module:attribute"`` imported on first use (keeps ``import mixq``
            light and framework packages reached only through the registry).
        config: the dataclass of settings the factory takes as its only argument (None: no settings).
        help: one line for ``--help`` and ``list_*``.
        origin: ``mixq`` for built-ins, else the distribution that registered it through an entry point.
    """

    name: str
    target: Callable[..., T] | str
    config: type | None = None
    help: str = ""
    origin: str = "mixq"

    def load(self) -> Callable[..., T]:
        """The factory, importing its module if the entry is lazy."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attribute = self.target.partition(":")
        module = importlib.import_module(module_name)
        factory: Callable[..., T] = getattr(module, attribute)
        return factory


class Registry(Generic[T]):
    """Named factories of one kind, plus the ones third parties declare under ``group``."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = group is None

    def register(self, name: str, *, config: type | None = None, help: str = "") -> Callable[[F], F]:
        """Decorator: register a class or function under ``name``."""

        def decorate(target: F) -> F:
            self.add(name, target, config=config, help=help)
            return target

        return decorate

    def add(self, name: str, target: Callable[..., T] | str, *, config: type | None = None, help: str = "",
            origin: str = "mixq") -> None:
        """Register ``target`` (a factory or a lazy ``"module:attribute"``) under ``name``."""
        known = self._entries.get(name)
        if known is not None and known.target != target:
            raise PluginError(f"two {self.kind}s are registered as {name!r} ({known.origin} and {origin}); "
                              f"rename one of them")
        self._entries[name] = Entry(name, target, config, help, origin)

    def get(self, name: str) -> Entry[T]:
        """The entry, or a ConfigError naming the closest known names."""
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(name, list(self._entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ConfigError(f"unknown {self.kind} {name!r}{hint} known: {', '.join(self.names()) or 'none'}")

    def create(self, name: str, config: Any = None) -> T:
        """Build the entry's object; with settings when the entry declares a config class."""
        entry = self.get(name)
        factory = entry.load()
        if entry.config is None:
            return factory()
        return factory(config if config is not None else entry.config())

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        self._load_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry[T]]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_plugins(self) -> None:
        """Import every entry point of ``group`` once; each registers itself or is registered by name."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in metadata.entry_points(group=self.group or ""):
            origin = point.dist.name if point.dist is not None else point.value
            try:
                loaded = point.load()
            except Exception as exc:  # a broken third-party plug-in must not break mixq
                logger.warning("could not load %s plug-in %r from %s: %s: %s", self.kind, point.name, origin,
                               type(exc).__name__, exc)
                continue
            if point.name not in self._entries and callable(loaded):
                self.add(point.name, loaded, config=getattr(loaded, "config_class", None),
                         help=(loaded.__doc__ or "").strip().splitlines()[0] if loaded.__doc__ else "",
                         origin=origin)
