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
>>> colours.add("teal", lambda: "#088", tags={"cool"})
>>> colours.names(tag="cool")
['teal']
>>> colours.get("rde")
Traceback (most recent call last):
...
mixq.errors.ConfigError: unknown colour 'rde'; did you mean 'red'? known: red, teal
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from mixq.errors import ConfigError, PluginError
from mixq.options import with_options

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
        tags: what the kind's users ask of an entry (e.g. cost models tagged ``additive`` may be ``--cost``;
            solvers tagged ``compared`` run in ``--compare-solvers`` by default).
    """

    name: str
    target: Callable[..., T] | str
    config: type | None = None
    help: str = ""
    origin: str = "mixq"
    tags: frozenset[str] = field(default_factory=frozenset)

    def load(self) -> Callable[..., T]:
        """The factory, importing its module if the entry is lazy."""
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attribute = self.target.partition(":")
        module = importlib.import_module(module_name)
        factory: Callable[..., T] = getattr(module, attribute)
        return factory


class Registry(Generic[T]):
    """Named factories of one kind, plus the ones third parties declare under ``group``.

    Names keep their declaration order (built-ins as their package lists them, then plug-ins), so
    ``--help`` and comparisons list them as the package intends.
    """

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = group is None
        self._plugin_error: PluginError | None = None

    def register(self, name: str, *, config: type | None = None, help: str = "",
                 tags: Collection[str] = ()) -> Callable[[F], F]:
        """Decorator: register a class or function under ``name``."""

        def decorate(target: F) -> F:
            self.add(name, target, config=config, help=help, tags=tags)
            return target

        return decorate

    def add(self, name: str, target: Callable[..., T] | str, *, config: type | None = None, help: str = "",
            origin: str = "mixq", tags: Collection[str] = ()) -> None:
        """Register ``target`` (a factory or a lazy ``"module:attribute"``) under ``name``."""
        known = self._entries.get(name)
        if known is not None and known.target != target:
            raise PluginError(f"two {self.kind}s are registered as {name!r} ({known.origin} and {origin}); "
                              f"rename one of them")
        self._entries[name] = Entry(name, target, config, help, origin, frozenset(tags))

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

    def settings(self, name: str, search: Any = None, options: Mapping[str, Any] | None = None) -> Any:
        """The settings dataclass instance entry ``name`` is created with (None if it takes none).

        Built by the dataclass's ``from_search(search)`` classmethod when it has one and ``search`` (the
        search's settings, e.g. a ``SearchConfig``) is given, else from its defaults; then ``options``
        (``{"curve_points": "50"}``, dotted keys for nested settings) are set, converted and checked.
        """
        entry = self.get(name)
        options = options or {}
        if entry.config is None:
            if options:
                raise ConfigError(f"{self.kind} {name} takes no settings; drop {', '.join(sorted(options))}")
            return None
        from_search = getattr(entry.config, "from_search", None)
        config = from_search(search) if from_search is not None and search is not None else entry.config()
        return with_options(config, options, f"{self.kind} {name}")

    def names(self, pattern: str = "*", tag: str | None = None) -> list[str]:
        """Registered names matching a shell-style ``pattern`` (and carrying ``tag``), in declaration order."""
        self._load_plugins()
        return [n for n, e in self._entries.items()
                if fnmatch.fnmatchcase(n, pattern) and (tag is None or tag in e.tags)]

    def entries(self, pattern: str = "*", tag: str | None = None) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names(pattern, tag)]

    def help(self, tag: str | None = None) -> str:
        """``name (help), ...``: one line that teaches the choices in ``--help``."""
        return ", ".join(f"{e.name} ({e.help})" if e.help else e.name for e in self.entries(tag=tag))

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_plugins(self) -> None:
        """Import every entry point of ``group`` once; each registers itself or is registered by name.

        A plug-in that fails to import only warns (a broken third-party package must not break mixq);
        two plug-ins, or a plug-in and a built-in, on one name are a PluginError every time it is asked.
        """
        if self._plugin_error is not None:
            raise self._plugin_error
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        try:
            for point in metadata.entry_points(group=self.group or ""):
                self._load_plugin(point)
        except PluginError as exc:
            self._plugin_error = exc
            raise

    def _load_plugin(self, point: metadata.EntryPoint) -> None:
        origin = point.dist.name if point.dist is not None else point.value
        known = self._entries.get(point.name)
        if known is not None:
            raise PluginError(f"two {self.kind}s are registered as {point.name!r} ({known.origin} and {origin}, "
                              f"entry point {point.value!r} in group {self.group}); uninstall or rename one")
        try:
            loaded = point.load()
        except Exception as exc:  # a broken third-party plug-in must not break mixq
            logger.warning("could not load %s plug-in %r from %s: %s: %s", self.kind, point.name, origin,
                           type(exc).__name__, exc)
            return
        if point.name in self._entries:  # the module registered itself while it was imported
            return
        if not callable(loaded):
            logger.warning("%s plug-in %r from %s is a %s, not a class or function; skipped", self.kind,
                           point.name, origin, type(loaded).__name__)
            return
        doc = (loaded.__doc__ or "").strip()
        self.add(point.name, loaded, config=getattr(loaded, "config_class", None),
                 help=doc.splitlines()[0] if doc else "", origin=origin,
                 tags=getattr(loaded, "registry_tags", ()))
