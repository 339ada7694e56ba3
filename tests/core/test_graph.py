from __future__ import annotations

import pytest

from mixq.core.assignment import Assignment, uniform
from mixq.core.graph import OpKind, QuantGraph, QuantOp, form_groups
from mixq.core.precision import Precision
from mixq.errors import ConfigError

W4A8, W8A8 = Precision(4, 8), Precision(8, 8)


def op(name: str, inputs: tuple[str, ...], weight: str | None = None, macs: int = 10, numel: int = 4) -> QuantOp:
    return QuantOp(name, OpKind.CONV, macs, numel, 2, inputs=inputs, weight=weight)


def test_ops_reading_one_tensor_share_a_group() -> None:
    ops = [op("a", ("x",)), op("b", ("y",)), op("c", ("x",))]
    groups = form_groups(ops, [W4A8, W8A8])
    assert [g.id for g in groups] == ["a", "b"]
    assert [o.name for o in groups[0].ops] == ["a", "c"]
    assert groups[0].candidates == (W4A8, W8A8)


def test_ops_sharing_a_weight_share_a_group() -> None:
    ops = [op("first", ("x",), weight="w"), op("other", ("z",)), op("again", ("y",), weight="w")]
    groups = form_groups(ops, [W8A8])
    assert [[o.name for o in g.ops] for g in groups] == [["first", "again"], ["other"]]


def test_grouping_is_transitive() -> None:
    # a-b share input x, b-c share weight w, c-d share input y: one group of four.
    ops = [
        op("a", ("x",)),
        op("b", ("x",), weight="w"),
        op("c", ("y",), weight="w"),
        op("d", ("y",)),
        op("e", ("q",)),
    ]
    groups = form_groups(ops, [])
    assert [[o.name for o in g.ops] for g in groups] == [["a", "b", "c", "d"], ["e"]]


def test_reused_weight_is_counted_once_but_macs_twice() -> None:
    ops = [op("m", ("x",), weight="w", macs=100, numel=50), op("m#2", ("y",), weight="w", macs=100, numel=50)]
    (group,) = form_groups(ops, [])
    assert group.macs == 200
    assert group.weight_numel == 50
    assert group.weight_channels == 2
    assert group.kinds == (OpKind.CONV,)


def test_graph_lookup_and_totals() -> None:
    groups = form_groups([op("a", ("x",), macs=7), op("b", ("y",), macs=5)], [W8A8])
    graph = QuantGraph({g.id: g for g in groups}, float_params=100)
    assert graph.ids == ("a", "b") and len(graph) == 2
    assert graph.total_macs == 12
    assert graph["b"].id == "b"
    with pytest.raises(ConfigError, match="mixq inspect"):
        graph["nope"]


def test_assignment_round_trip_and_counts() -> None:
    groups = form_groups([op("a", ("x",)), op("b", ("y",)), op("c", ("z",))], [W4A8, W8A8])
    graph = QuantGraph({g.id: g for g in groups})
    assignment = uniform(graph, W8A8).with_("b", W4A8)
    assert assignment.counts() == {"w8a8": 2, "w4a8": 1}
    assert Assignment.from_dict(assignment.to_dict(), graph) == assignment
    assert uniform(graph, W8A8)["b"] == W8A8  # with_ copies


def test_assignment_for_another_model_is_rejected() -> None:
    groups = form_groups([op("a", ("x",)), op("b", ("y",))], [W8A8])
    graph = QuantGraph({g.id: g for g in groups})
    with pytest.raises(ConfigError, match="missing groups \\['b'\\].*unknown groups \\['zz'\\]"):
        Assignment.from_dict({"a": "w8a8", "zz": "w4a8"}, graph)
