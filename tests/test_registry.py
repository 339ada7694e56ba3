"""The generic registry: order, tags, did-you-mean, settings, and third-party entry points."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from mixq.errors import ConfigError, PluginError
from mixq.registry import Registry
from mixq.testing.plugins import install_plugin


@dataclass(frozen=True)
class Knobs:
    steps: int = 3
    seed: int = 0

    @classmethod
    def from_search(cls, search: object) -> Knobs:
        return cls(seed=search.seed)


class Widget:
    """A widget with knobs."""

    def __init__(self, config: Knobs) -> None:
        self.config = config


@dataclass(frozen=True)
class Search:
    seed: int


def widgets() -> Registry[Widget]:
    registry: Registry[Widget] = Registry("widget")
    registry.add("zeta", Widget, config=Knobs, help="last letter", tags={"fast"})
    registry.add("alpha", lambda: Widget(Knobs()), help="first letter")
    return registry


def test_names_keep_declaration_order_and_filter_by_pattern_and_tag() -> None:
    registry = widgets()
    assert registry.names() == ["zeta", "alpha"]
    assert registry.names("a*") == ["alpha"] and registry.names(tag="fast") == ["zeta"]
    assert "zeta" in registry and "beta" not in registry
    assert registry.help() == "zeta (last letter), alpha (first letter)"


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="unknown widget 'zeat'; did you mean 'zeta'\\? known: zeta, alpha"):
        widgets().get("zeat")


def test_settings_come_from_the_search_then_the_options() -> None:
    registry = widgets()
    assert registry.settings("zeta") == Knobs()
    assert registry.settings("zeta", Search(seed=7), {"steps": "5"}) == Knobs(steps=5, seed=7)
    assert registry.create("zeta", registry.settings("zeta", Search(seed=7))).config.seed == 7
    with pytest.raises(ConfigError, match="widget zeta has no setting 'step'; did you mean 'steps'\\? known: steps, seed"):
        registry.settings("zeta", options={"step": 1})
    with pytest.raises(ConfigError, match="widget alpha takes no settings; drop steps"):
        registry.settings("alpha", options={"steps": 1})


def test_a_second_registration_under_a_taken_name_is_a_plugin_error() -> None:
    registry = widgets()
    registry.add("zeta", Widget, config=Knobs)  # the same target again is harmless
    with pytest.raises(PluginError, match="two widgets are registered as 'zeta'"):
        registry.add("zeta", lambda: None)


GADGET = '''
class Gadget:
    """A gadget from outside mixq."""

    registry_tags = ("fast",)
'''


def test_entry_points_register_third_party_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, "gadget-plugin", {"gadget_plugin": GADGET},
                   {"mixq.test_gadgets": {"gadget": "gadget_plugin:Gadget"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[object] = Registry("gadget", "mixq.test_gadgets")
    registry.add("builtin", object)
    assert registry.names() == ["builtin", "gadget"]
    entry = registry.get("gadget")
    assert entry.origin == "gadget-plugin" and entry.help == "A gadget from outside mixq." and entry.tags == {"fast"}
    assert type(registry.create("gadget")).__name__ == "Gadget"


def test_a_broken_plugin_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    install_plugin(tmp_path, "broken-plugin", {"broken_plugin": "raise RuntimeError('boom')\n"},
                   {"mixq.test_broken": {"broken": "broken_plugin:Thing"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[object] = Registry("gadget", "mixq.test_broken")
    registry.add("builtin", object)
    with caplog.at_level(logging.WARNING, logger="mixq.registry"):
        assert registry.names() == ["builtin"]
    assert "could not load gadget plug-in 'broken' from broken-plugin: RuntimeError: boom" in caplog.text


def test_two_plugins_on_one_name_are_a_clear_error_every_time(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for dist in ("first-plugin", "second-plugin"):
        module = dist.replace("-", "_")
        install_plugin(tmp_path / dist, dist, {module: GADGET}, {"mixq.test_twice": {"gadget": f"{module}:Gadget"}})
        monkeypatch.syspath_prepend(str(tmp_path / dist))
    registry: Registry[object] = Registry("gadget", "mixq.test_twice")
    for _ in range(2):
        with pytest.raises(PluginError, match="two gadgets are registered as 'gadget' \\((first|second)-plugin and "
                                              "(first|second)-plugin"):
            registry.get("gadget")


def test_a_plugin_cannot_take_a_builtin_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, "greedy-too", {"greedy_too": GADGET}, {"mixq.test_shadow": {"greedy": "greedy_too:Gadget"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[object] = Registry("solver", "mixq.test_shadow")
    registry.add("greedy", object)
    with pytest.raises(PluginError, match="two solvers are registered as 'greedy' \\(mixq and greedy-too"):
        registry.names()
