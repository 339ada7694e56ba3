"""``--config-file``: any flag of a command from a YAML or TOML file; flags on the command line win.

Keys are flag names, with dashes or underscores (``num-samples`` or ``num_samples``), plus ``model``
for the MODEL argument. Values keep their types (``num_samples: 16``, ``per_tensor_weights: true``);
a repeatable flag takes a list (``budget: ["bops<=0.5", "sqnr>=30"]``), ``candidates`` may be a
list too, and ``solver_options`` a mapping (``{curve_points: 50}`` or ``{ilp: {time_limit_s: 5}}``). A table named after a command (``[search]``, ``[eval]``) holds keys for that command only,
so one file can serve both. Relative paths are relative to the working directory, as on the command line.

How the merge works: the command line is parsed once by a "probe" parser that has no defaults and
nothing required, which tells exactly which flags were typed; the file's values become the real
parser's defaults (and make its required arguments optional); then typed values replace file values,
including for repeatable flags and mutually exclusive choices (``--uniform`` typed beats ``plan:`` in
the file).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mixq.errors import ConfigError
from mixq.schema import read_text
from mixq.schema.configfile import validate_config

DEST = "config_file"
#: Flags whose value is a comma-separated list, so a file may give them as a list.
COMMA_LISTS = frozenset({"candidates"})
#: Repeatable KEY=VALUE flags, so a file may give them as a mapping (``solver_options: {curve_points: 50}``).
KEY_VALUE_LISTS = frozenset({"solver_options", "tune_options"})
_SKIP = frozenset({"help", "version", DEST})


def add_config_file_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-file", dest=DEST, metavar="FILE",
                        help="YAML (.yaml/.yml) or TOML (.toml) file of flags (keys: flag names, e.g. "
                             "num-samples: 16, budget: [\"bops<=0.5\"]); flags given here override it")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The file's top-level mapping; a syntax error or an unknown suffix is a ConfigError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(f"--config-file {path}: use a .yaml, .yml or .toml file")
    text = read_text(path, "--config-file", ConfigError)
    if suffix == ".toml":
        data = _parse_toml(path, text)
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config-file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config-file {path} must hold a mapping of flag names to values, not {type(data).__name__}")
    return data


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ConfigError(f"--config-file {path}: reading TOML needs python >= 3.11 or `pip install tomli`; "
                              "or use YAML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config-file {path} is not valid TOML: {' '.join(str(exc).split())}") from None


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Command name -> its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _actions(parser: argparse.ArgumentParser) -> Iterable[argparse.Action]:
    yield from parser._actions
    for sub in subparsers(parser).values():
        yield from sub._actions


def _file_keys(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every accepted key (normalized to underscores) -> the action it sets."""
    keys: dict[str, argparse.Action] = {}
    for action in sub._actions:
        if action.dest in _SKIP or isinstance(action, argparse._SubParsersAction):
            continue
        keys[action.dest] = action
        for option in action.option_strings:
            if option.startswith("--"):
                keys[option[2:].replace("-", "_")] = action
    return keys


def _valid_names(sub: argparse.ArgumentParser) -> list[str]:
    """The names to show a user: long flag names as typed, plus positionals."""
    names = []
    for action in sub._actions:
        if action.dest in _SKIP or isinstance(action, argparse._SubParsersAction):
            continue
        longs = [o[2:] for o in action.option_strings if o.startswith("--")]
        names.append(longs[0] if longs else action.dest)
    return names


def resolve_file(data: Mapping[str, Any], command: str, sub: argparse.ArgumentParser, commands: Iterable[str],
                 source: str) -> dict[str, Any]:
    """File keys -> ``{dest: value}`` for ``command``, converted and checked like the flags they stand for."""
    flat = {k: v for k, v in data.items() if not (k in commands and isinstance(v, dict))}
    section = data.get(command)
    if isinstance(section, dict):
        flat.update(section)  # the command's own table wins over shared keys
    keys = _file_keys(sub)
    seen: dict[str, argparse.Action] = {}
    for key in flat:
        action = keys.get(str(key).replace("-", "_"))
        if action is None:
            raise ConfigError(f"unknown key {key!r} in {source} for `mixq {command}`; valid keys: "
                              f"{', '.join(_valid_names(sub))}")
        if action.dest in {a.dest for a in seen.values()}:
            raise ConfigError(f"{source} sets {action.dest!r} twice (as {key!r} and another spelling)")
        seen[key] = action
    # the shapes first (one value or a list; solver_options a mapping), by mixq.schema, naming the key
    validate_config(flat, KEY_VALUE_LISTS, f"--config-file {source}")
    return {action.dest: _convert(action, flat[key], key, source) for key, action in seen.items()}


def _convert(action: argparse.Action, value: Any, key: str, source: str) -> Any:
    where = f"{key!r} in {source}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool):
            return int(value)
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where} must be a count (0, 1, 2) or true/false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction) and action.dest in KEY_VALUE_LISTS and isinstance(value, dict):
        return [f"{k}={'' if v is None else str(v).lower() if isinstance(v, bool) else v}"
                for k, v in _flatten(value).items()]
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_scalar(action, item, where) for item in items]
    if isinstance(value, list) and action.dest in COMMA_LISTS:
        value = ",".join(str(_scalar(action, item, where)) for item in value)
    return _scalar(action, value, where)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{ilp: {time_limit_s: 5}}`` -> ``{"ilp.time_limit_s": 5}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _scalar(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, (dict, list)) or value is None or isinstance(value, bool):
        raise ConfigError(f"{where} must be a single {_type_name(action)}, got {value!r}")
    kind: Any = action.type
    if kind is None:
        converted: Any = str(value)
    else:
        try:
            converted = kind(value.strip() if isinstance(value, str) else value)
        except argparse.ArgumentTypeError as exc:  # a registry name (--solver): its did-you-mean message
            raise ConfigError(f"{where}: {exc}") from None
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be {_type_name(action)}, got {value!r}") from None
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return converted


def _type_name(action: argparse.Action) -> str:
    names: dict[Any, str] = {int: "an integer", float: "a number"}
    return names.get(action.type, "a string")


def _probe(argv: Sequence[str], build: Any) -> argparse.Namespace:
    """Parse ``argv`` keeping only what was typed: no defaults, nothing required."""
    probe: argparse.ArgumentParser = build()
    parsers = [probe, *subparsers(probe).values()]
    for action in _actions(probe):
        if isinstance(action, argparse._SubParsersAction):
            continue
        action.default = argparse.SUPPRESS
        action.required = False
        if not action.option_strings and action.nargs is None:
            action.nargs = "?"
    for parser in parsers:
        for group in parser._mutually_exclusive_groups:
            group.required = False
    return probe.parse_args(argv)


def parse_with_config(argv: Sequence[str], build: Any) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """Parse ``argv`` with the parser ``build()`` makes, merging ``--config-file`` if one was given.

    Returns the namespace and the parser used (for help on a missing command).
    """
    parser: argparse.ArgumentParser = build()
    if any(a in ("-h", "--help") for a in argv) or not argv:
        return parser.parse_args(argv), parser
    try:  # quietly: on a bad command line the real parser below exits with its own message and usage
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            typed = _probe(argv, build)
    except SystemExit:
        return parser.parse_args(argv), parser
    path = getattr(typed, DEST, None)
    command = getattr(typed, "command", None)
    if path is None or command is None:
        return parser.parse_args(argv), parser
    commands = subparsers(parser)
    sub = commands[command]
    values = resolve_file(read_config_file(path), command, sub, commands, str(path))
    typed_dests = set(vars(typed))
    actions = {a.dest: a for a in sub._actions}
    for dest, value in values.items():
        action = actions[dest]
        action.default = value
        action.required = False
        if not action.option_strings and action.nargs is None:
            action.nargs = "?"
    for group in sub._mutually_exclusive_groups:
        if {a.dest for a in group._group_actions} & set(values):
            group.required = False
    args = parser.parse_args(argv)
    for dest in typed_dests:  # typed values win, also over a file's list or a file's exclusive choice
        setattr(args, dest, getattr(typed, dest))
    for group in sub._mutually_exclusive_groups:
        exclusive = [a.dest for a in group._group_actions]
        if any(dest in typed_dests for dest in exclusive):
            for dest in exclusive:
                if dest not in typed_dests:
                    setattr(args, dest, _original_default(build, command, dest))
        elif sum(dest in values for dest in exclusive) > 1:
            raise ConfigError(f"{path} sets {', '.join(d for d in exclusive if d in values)}; "
                              "they exclude each other: keep one")
    return args, parser


def _original_default(build: Any, command: str, dest: str) -> Any:
    fresh = subparsers(build())[command]
    return next(a.default for a in fresh._actions if a.dest == dest)


def resolved_command(build: Any, args: argparse.Namespace) -> str:
    """The command line equivalent to ``args`` with every non-default value spelled out.

    Recorded for runs made from a config file, so the run directory reproduces the run even if the
    file changes later.
    """
    sub = subparsers(build())[args.command]
    words = ["mixq", args.command]
    options: list[str] = []
    for action in sub._actions:
        if action.dest in _SKIP or isinstance(action, argparse._SubParsersAction):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default or value is None:
            continue
        if not action.option_strings:
            words.append(str(value))
            continue
        flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            options.append(flag)
        elif isinstance(action, argparse._CountAction):
            options += [flag] * int(value)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                options += [flag, str(item)]
        else:
            options += [flag, str(value)]
    return shlex.join(words + options)


def typed_command(argv: Sequence[str] | None) -> str | None:
    """The command as the user typed it (``sys.argv`` when ``argv`` is None)."""
    words = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["mixq", *words]) if words else None
