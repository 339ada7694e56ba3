"""Hardware descriptions: which kernels a target has, what they cost, which layers are fixed.

``load_hardware("onnxruntime-cpu")`` gives a built-in; ``load_hardware("my-npu.yaml")`` (or ``.toml``)
reads a file in the same format (see :mod:`mixq.hardware.spec`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from mixq.schema import read_text

from mixq.core.budget import CostBudget
from mixq.core.graph import OpKind
from mixq.cost.kernel_latency import KernelLatency
from mixq.errors import ConfigError
from mixq.hardware.registry import HARDWARE
from mixq.hardware.spec import Hardware


def load_hardware(spec: str | Path) -> Hardware:
    """A built-in target by name, or a YAML/TOML description file.

    >>> load_hardware("onnxruntime-cpu").kernels_for(OpKind.CONV)
    (Precision(weight_bits=8, act_bits=8, is_float=False), Precision(weight_bits=32, act_bits=32, is_float=True))
    """
    text = str(spec)
    if text in HARDWARE:
        return HARDWARE.create(text)
    path = Path(text)
    if not path.is_file():
        close = difflib.get_close_matches(text, HARDWARE.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown hardware {text!r}{hint}: give a built-in ({', '.join(HARDWARE.names())}) or a .yaml/.toml "
            "description file"
        )
    return Hardware.from_dict(_read(path), f"hardware description {path}")


def latency_needed(cost: str, budgets: Iterable[CostBudget], hardware: str | None) -> bool:
    """Latency must be measured: it is the cost or a budget, and no hardware description (``--hardware``)
    defines it."""
    if cost != "latency" and not any(b.cost == "latency" for b in budgets):
        return False
    if hardware is None:
        return True
    return "latency" not in load_hardware(hardware).cost_models()


def _read(path: Path) -> Any:
    raw = read_text(path, "hardware description", ConfigError, fix="give a built-in name or a .yaml/.toml file")
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ConfigError(f"reading {path} needs Python 3.11 (tomllib); write it as YAML instead") from None
        try:
            return tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None


__all__ = ["HARDWARE", "Hardware", "KernelLatency", "OpKind", "latency_needed", "load_hardware"]
