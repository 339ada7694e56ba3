"""An assignment: one precision per quantizer group, the thing every search returns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mixq.core.graph import GroupId, QuantGraph
from mixq.core.precision import Precision
from mixq.errors import ConfigError


@dataclass(frozen=True)
class Assignment:
    """Precision per group id. Immutable; ``with_`` returns a changed copy."""

    precisions: Mapping[GroupId, Precision]

    def __getitem__(self, group: GroupId) -> Precision:
        return self.precisions[group]

    def __iter__(self) -> Iterator[GroupId]:
        return iter(self.precisions)

    def __len__(self) -> int:
        return len(self.precisions)

    def items(self) -> Iterator[tuple[GroupId, Precision]]:
        return iter(self.precisions.items())

    def with_(self, group: GroupId, precision: Precision) -> Assignment:
        changed = dict(self.precisions)
        changed[group] = precision
        return Assignment(changed)

    def counts(self) -> dict[str, int]:
        """How many groups sit at each precision, e.g. ``{"w4a8": 29, "w8a8": 21}``."""
        out: dict[str, int] = {}
        for precision in self.precisions.values():
            out[str(precision)] = out.get(str(precision), 0) + 1
        return out

    def to_dict(self) -> dict[str, str]:
        return {group: str(precision) for group, precision in self.precisions.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, str], graph: QuantGraph | None = None) -> Assignment:
        """Read a saved assignment; with a graph, check it names exactly that model's groups."""
        assignment = cls({group: Precision.parse(text) for group, text in data.items()})
        if graph is not None:
            missing = [g for g in graph.ids if g not in assignment.precisions]
            extra = [g for g in assignment.precisions if g not in graph.groups]
            if missing or extra:
                raise ConfigError(
                    "the plan does not fit this model: "
                    + (f"missing groups {missing[:5]}" if missing else "")
                    + (" " if missing and extra else "")
                    + (f"unknown groups {extra[:5]}" if extra else "")
                    + "; was it made for another model or another mixq version?"
                )
        return assignment


def uniform(graph: QuantGraph, precision: Precision) -> Assignment:
    """Every group at one precision: the baseline that mixed precision has to beat."""
    return Assignment({group.id: precision for group in graph})


def resolve(graph: QuantGraph, what: Assignment | Precision | str | None) -> Assignment | None:
    """What to run on ``graph``: a saved assignment checked against it, a uniform precision (``"w8a8"``),
    or None for the float model."""
    if what is None:
        return None
    if isinstance(what, Assignment):
        return Assignment.from_dict(what.to_dict(), graph)
    return uniform(graph, what if isinstance(what, Precision) else Precision.parse(what))

