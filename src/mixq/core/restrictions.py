"""Per-group restrictions: "first and last layer at least w8a8", "this op only has int8 kernels".

A restriction narrows the candidates of the groups it names *before* any solver runs, so every
solver (greedy, ILP, IQP, closed loop) respects it without knowing it exists; the sensitivity
table is untouched (it covers a superset), so a run directory stays reusable across restrictions.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mixq.core.graph import GroupId, QuantGraph, QuantizerGroup
from mixq.core.precision import Precision, parse_candidates
from mixq.errors import ConfigError

#: Special patterns: the first and last group in graph (topological) order.
SPECIAL = ("first", "last")

RESTRICTION_HELP = (
    "write a restriction as PATTERNS>=PRECISION (at least: no fewer weight and activation bits, e.g. "
    '"first,last>=w8a8") or PATTERNS=P1|P2 (only these, e.g. "layer1.*.conv2=w8a8|fp32"); PATTERNS is a '
    "comma-separated list of group or op names with * and ? wildcards, or first / last"
)
_SYNTAX = re.compile(r"^\s*(?P<patterns>[^<>=]+?)\s*(?P<op>>=|=)\s*(?P<precisions>[^<>=]+?)\s*$")


def at_least(precision: Precision, minimum: Precision) -> bool:
    """No fewer weight bits and no fewer activation bits (fp16 counts as 16/16, fp32 as 32/32).

    >>> p = Precision.parse
    >>> at_least(p("w8a16"), p("w8a8")), at_least(p("w4a16"), p("w8a8")), at_least(p("fp16"), p("w8a16"))
    (True, False, True)
    """
    return precision.weight_bits >= minimum.weight_bits and precision.act_bits >= minimum.act_bits


@dataclass(frozen=True)
class Restriction:
    """Which precisions the groups matching ``patterns`` may take.

    Attributes:
        patterns: fnmatch patterns matched against each group's id and its ops' names, or the
            special names ``first`` / ``last``; a string is split at commas.
        min_precision: the group must have at least this many weight and activation bits.
        allowed: the group may take only these precisions.
        required: a pattern that matches no group is an error (a typo must not pass silently);
            hardware descriptions, written for any model, set it False.
    """

    patterns: tuple[str, ...]
    min_precision: Precision | None = None
    allowed: tuple[Precision, ...] | None = None
    required: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        patterns = self.patterns.split(",") if isinstance(self.patterns, str) else self.patterns
        cleaned = tuple(p.strip() for p in patterns if p.strip())
        if not cleaned:
            raise ConfigError(f"a restriction needs at least one group pattern; {RESTRICTION_HELP}")
        object.__setattr__(self, "patterns", cleaned)
        if isinstance(self.min_precision, str):
            object.__setattr__(self, "min_precision", Precision.parse(self.min_precision))
        if self.allowed is not None:
            object.__setattr__(self, "allowed", parse_candidates(self.allowed))
        if self.min_precision is None and self.allowed is None:
            raise ConfigError(f"restriction on {','.join(cleaned)} says nothing; {RESTRICTION_HELP}")

    @classmethod
    def parse(cls, text: str) -> Restriction:
        """Read ``"first,last>=w8a8"`` or ``"conv1=w8a8|fp32"``.

        >>> str(Restriction.parse(" first , last >= W8A8"))
        'first,last>=w8a8'
        >>> Restriction.parse("stem.*=w8a8|fp32").allowed
        (Precision(weight_bits=8, act_bits=8, is_float=False), Precision(weight_bits=32, act_bits=32, is_float=True))
        """
        match = _SYNTAX.match(text)
        if match is None:
            raise ConfigError(f"cannot read restriction {text!r}: {RESTRICTION_HELP}")
        patterns, precisions = match["patterns"], match["precisions"]
        if match["op"] == ">=":
            return cls(tuple(patterns.split(",")), min_precision=Precision.parse(precisions))
        return cls(tuple(patterns.split(",")), allowed=parse_candidates(precisions.split("|")))

    def __str__(self) -> str:
        names = ",".join(self.patterns)
        parts = []
        if self.min_precision is not None:
            parts.append(f"{names}>={self.min_precision}")
        if self.allowed is not None:
            parts.append(f"{names}={'|'.join(str(p) for p in self.allowed)}")
        return ";".join(parts)

    def permits(self, precision: Precision) -> bool:
        if self.min_precision is not None and not at_least(precision, self.min_precision):
            return False
        return self.allowed is None or precision in self.allowed

    def matches(self, graph: QuantGraph) -> list[GroupId]:
        """Ids of the groups this restriction applies to, in graph order."""
        ids = graph.ids
        out = []
        for group in graph:
            for pattern in self.patterns:
                if _matches(pattern, group, ids):
                    out.append(group.id)
                    break
        return out


def _matches(pattern: str, group: QuantizerGroup, ids: Sequence[GroupId]) -> bool:
    if pattern == "first":
        return group.id == ids[0]
    if pattern == "last":
        return group.id == ids[-1]
    names = (group.id, *(op.name for op in group.ops))
    return any(fnmatch.fnmatchcase(name, pattern) for name in names)


def parse_restrictions(items: Iterable[str | Restriction]) -> tuple[Restriction, ...]:
    """Restrictions from strings (``;`` separates several in one string) or ready objects."""
    out: list[Restriction] = []
    for item in items:
        if isinstance(item, Restriction):
            out.append(item)
            continue
        out.extend(Restriction.parse(part) for part in str(item).split(";") if part.strip())
    return tuple(out)


Narrowing = Callable[[QuantizerGroup], tuple[Precision, ...]]


def narrow_graph(graph: QuantGraph, allowed: Narrowing, why: Callable[[QuantizerGroup], str]) -> QuantGraph:
    """A copy of ``graph`` with each group's candidates replaced by ``allowed(group)`` (order kept).

    Raises:
        ConfigError: a group is left with no candidate; ``why(group)`` explains what removed them.
    """
    groups = {}
    for group in graph:
        kept = allowed(group)
        if not kept:
            raise ConfigError(
                f"{why(group)} leaves group {group.id!r} with no candidate (it had "
                f"{', '.join(str(p) for p in group.candidates)}); add a candidate that satisfies it to --candidates "
                "or relax the restriction"
            )
        groups[group.id] = QuantizerGroup(group.id, group.ops, kept)
    return QuantGraph(groups, graph.float_params, graph.unquantized)


def apply_restrictions(graph: QuantGraph, restrictions: Sequence[Restriction]) -> QuantGraph:
    """Narrow every group's candidates to those all restrictions naming it permit.

    Raises:
        ConfigError: a required restriction matches no group, or one leaves a group without candidates.
    """
    if not restrictions:
        return graph
    applying: dict[GroupId, list[Restriction]] = {}
    for restriction in restrictions:
        matched = restriction.matches(graph)
        if not matched and restriction.required:
            raise ConfigError(
                f"restriction {restriction} matches no quantizer group; `mixq inspect MODEL` lists the group "
                f"and op names (e.g. {', '.join(graph.ids[:3])}), or use first / last"
            )
        for group_id in matched:
            applying.setdefault(group_id, []).append(restriction)

    def allowed(group: QuantizerGroup) -> tuple[Precision, ...]:
        rules = applying.get(group.id, [])
        return tuple(p for p in group.candidates if all(rule.permits(p) for rule in rules))

    def why(group: QuantizerGroup) -> str:
        return "restriction " + " and ".join(str(rule) for rule in applying.get(group.id, []))

    return narrow_graph(graph, allowed, why)
