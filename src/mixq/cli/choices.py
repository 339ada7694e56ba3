"""Flags whose values are registry names: argparse checks them with the registry's did-you-mean."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mixq.errors import ConfigError
from mixq.registry import Registry


def name_in(registry: Registry[Any]) -> Callable[[str], str]:
    """An argparse ``type`` accepting a registered name; otherwise the registry's error (exit 2).

    argparse checks ``type`` before ``choices``, so ``--solver gredy`` says "did you mean 'greedy'?"
    instead of only listing the choices.
    """

    def check(value: str) -> str:
        try:
            registry.get(value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    check.__name__ = registry.kind
    return check
