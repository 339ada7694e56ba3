"""Hardware descriptions: built-ins, files, narrowing by op kind, per-kernel costs, restrictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixq.config import SearchConfig
from mixq.core.graph import OpKind, QuantGraph, QuantizerGroup, QuantOp
from mixq.core.precision import Precision, parse_candidates
from mixq.core.tables import SensitivityTable
from mixq.errors import ConfigError, InfeasibleBudgetError
from mixq.hardware import HARDWARE, Hardware, load_hardware
from mixq.solvers import GreedySolver, IlpSolver
from mixq.solvers.run import build_problem

ALL = parse_candidates("w4a8,w8a8,w8a16,fp16,fp32")
P = Precision.parse


def op(name: str, kind: OpKind, macs: int = 1000, inputs: tuple[str, ...] | None = None) -> QuantOp:
    return QuantOp(name, kind, macs, 0 if kind is OpKind.MATMUL else 100, 4, inputs=inputs or (f"{name}:in",),
                   weight=None if kind is OpKind.MATMUL else f"{name}.w")


def graph(candidates: tuple[Precision, ...] = ALL) -> QuantGraph:
    """One group per op kind, plus a group whose conv and depthwise conv share an input."""
    groups = [QuantizerGroup(kind.value, (op(kind.value, kind),), candidates) for kind in OpKind]
    shared = (op("mixed_a", OpKind.CONV, inputs=("t",)), op("mixed_b", OpKind.DEPTHWISE_CONV, inputs=("t",)))
    groups.append(QuantizerGroup("mixed_a", shared, candidates))
    return QuantGraph({g.id: g for g in groups}, float_params=100 * 7)


def table(g: QuantGraph) -> SensitivityTable:
    return SensitivityTable({(group.id, p): 10.0 + 3 * p.weight_bits + p.act_bits for group in g
                             for p in group.candidates})


def names(g: QuantGraph) -> dict[str, list[str]]:
    return {group.id: [str(p) for p in group.candidates] for group in g}


def test_generic_changes_nothing() -> None:
    g = graph()
    assert load_hardware("generic").narrow(g) == g


def test_onnxruntime_cpu_keeps_int8_and_fp32_and_says_why() -> None:
    hw = load_hardware("onnxruntime-cpu")
    narrowed = names(hw.narrow(graph()))
    for kind in ("conv", "depthwise_conv", "linear", "matmul", "mixed_a"):
        assert narrowed[kind] == ["w8a8", "fp32"]
    assert narrowed["conv_transpose"] == ["fp32"]
    for phrase in ("no int4 compute", "storage", "u8", "s8", "QDQ"):
        assert phrase in hw.description
    with pytest.raises(ConfigError, match=r"hardware 'onnxruntime-cpu' \(kernels conv_transpose: fp32\) leaves group "
                                          r"'conv_transpose' with no candidate.*--candidates"):
        hw.narrow(graph(parse_candidates("w4a8,w8a8,w8a16")))


def test_npu_has_the_papers_kernels_and_no_4_bit_activation_matmul() -> None:
    narrowed = names(load_hardware("npu-w4a8-w8a8-w8a16").narrow(graph()))
    assert narrowed["conv"] == ["w4a8", "w8a8", "w8a16"] == narrowed["mixed_a"] == narrowed["linear"]
    assert narrowed["matmul"] == ["w8a8", "w8a16"]


def test_a_group_gets_the_kernels_all_its_op_kinds_share(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nkernels:\n  conv: [w4a8, w8a8]\n  depthwise_conv: [w8a8, w8a16]\n  default: [w8a8]\n")
    assert names(load_hardware(path).narrow(graph()))["mixed_a"] == ["w8a8"]


YAML = """
name: edge-npu
description: test target
kernels:
  conv: [w4a8, w8a8]
  default: [w8a8, w8a16]
cost:
  latency:
    conv: {w4a8: 0.5, w8a8: 1.0}
    default: {w8a8: 1.0, w8a16: 2.0}
restrictions: ["first>=w8a8", "nothing_like_this*>=w8a16"]
"""

TOML = """
name = "edge-npu"
description = "test target"
restrictions = ["first>=w8a8", "nothing_like_this*>=w8a16"]
[kernels]
conv = ["w4a8", "w8a8"]
default = ["w8a8", "w8a16"]
[cost.latency]
conv = { w4a8 = 0.5, w8a8 = 1.0 }
default = { w8a8 = 1.0, w8a16 = 2.0 }
"""


def test_yaml_and_toml_describe_the_same_target(tmp_path: Path) -> None:
    (tmp_path / "hw.yaml").write_text(YAML)
    (tmp_path / "hw.toml").write_text(TOML)
    from_yaml, from_toml = load_hardware(tmp_path / "hw.yaml"), load_hardware(tmp_path / "hw.toml")
    assert from_yaml == from_toml
    narrowed = names(from_yaml.narrow(graph()))  # the file's restriction matching nothing is not an error
    assert narrowed["conv"] == ["w8a8"]  # first group: at least w8a8
    assert narrowed["linear"] == ["w8a8", "w8a16"]


def test_latency_is_a_cost_to_walk_and_to_budget(tmp_path: Path) -> None:
    path = tmp_path / "hw.yaml"
    path.write_text(YAML.replace('restrictions: ["first>=w8a8", "nothing_like_this*>=w8a16"]', ""))
    g = graph(parse_candidates("w4a8,w8a8,w8a16"))
    g = QuantGraph({k: v for k, v in g.groups.items() if k in ("conv", "linear")}, 200)
    problem = build_problem(g, table(g), cost="latency", hardware=str(path))
    assert problem.reference("latency") == pytest.approx(1000 * 1.0 + 1000 * 2.0)  # slowest kernel of each op
    config = SearchConfig(budgets=("latency<=0.5",), cost="latency", hardware=str(path))
    budget = config.cost_budgets[0]
    point = IlpSolver().solve(problem, [budget])
    assert point.costs["latency"] <= 1500 + 1e-9
    assert [str(p.assignment["conv"]) for p in GreedySolver().curve(problem).points][-1] == "w4a8"
    assert SearchConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InfeasibleBudgetError, match="latency"):
        IlpSolver().solve(problem, list(SearchConfig(budgets=("latency<=0.1",), cost="latency").cost_budgets))


def test_latency_without_a_description_is_refused() -> None:
    g = graph(parse_candidates("w8a8,w8a16"))
    with pytest.raises(ConfigError, match="latency needs a hardware description"):
        build_problem(g, table(g), cost="latency")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nkernels: {convolution: [w8a8]}\n", "unknown op kind 'convolution'"),
        ("name: x\nkernel: {conv: [w8a8]}\n", "unknown keys"),
        ("name: x\nkernels: {conv: [w17a8]}\n", "bit-width 17"),
        ("name: x\nkernels: {conv: [w8a8]}\n", "lists no kernels for depthwise_conv"),
        ("name: x\ncost: {latency: {conv: {w8a8: -1}}}\n", "must be positive"),
        ("name: x\nrestrictions: first>=w8a8\n", "list of strings"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_descriptions_are_one_clear_config_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_hardware(path).narrow(graph())


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(ConfigError, match="generic, onnxruntime-cpu, openvino-cpu, npu-w4a8-w8a8-w8a16"):
        load_hardware("tpu-v9")
    assert HARDWARE.names() == ["generic", "onnxruntime-cpu", "openvino-cpu", "npu-w4a8-w8a8-w8a16"]
    assert all(isinstance(load_hardware(name), Hardware) and load_hardware(name).description for name in HARDWARE)
    with pytest.raises(ConfigError, match="did you mean 'onnxruntime-cpu'"):
        load_hardware("onnxruntime-cpus")


def test_search_config_keeps_hardware_and_restrictions_through_a_round_trip() -> None:
    config = SearchConfig(budgets=("bops<=0.4",), hardware="onnxruntime-cpu", solver="evolution",
                          restrictions=("first,last>=w8a8", "stem=w8a8|fp32"), max_evaluations=12, pair_groups=5)
    again = SearchConfig.from_dict(config.to_dict())
    assert again == config and [str(r) for r in again.restrictions] == ["first,last>=w8a8", "stem=w8a8|fp32"]
    assert again.solver_settings().max_evaluations == 12 and again.solver_config("iqp").top_k == 5
    with pytest.raises(ConfigError, match="unknown solver 'anneal'"):
        SearchConfig(solver="anneal")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nkernels: {convolution: [w8a8], lin: [w8a8]}\n",
         r"kernels\.convolution: unknown op kind 'convolution'; use conv, .* or default.*"
         r"kernels\.lin: unknown op kind 'lin'"),
        ("name: x\nkernels: {conv: [w8a8, w3a7x]}\n", r"kernels\.conv: .*w3a7x"),
        ("name: x\nkernels: {conv: 8}\n", r"kernels\.conv: a list of precisions such as \[w8a8, fp32\]"),
        ("name: x\nkernels: [w8a8]\n", r"kernels: `kernels` maps op kinds \(conv, .*default\) to lists"),
        ("name: x\ncost: {latency: {default: {w9a9x: 1.0}}}\n", r"cost\.latency\.default\.w9a9x"),
        ("name: x\ncost: {bops: {}}\n", r"cost: unknown keys \['bops'\]; known: latency \(bops and size"),
        ("name: x\ncost: {latency: {}}\n", r"cost\.latency: .*it is empty"),
        ("name: x\nrestrictions: [\"first>=w99a8\"]\n", r"restrictions: .*w99a8"),
        ("name: 7\n", r"name: input should be a valid string \(got 7\)"),
        ("[1, 2]\n", r"a hardware description must be a mapping with name, description, kernels, cost, restrictions"),
    ],
)
def test_description_violations_name_the_field(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_hardware(path)
    message = str(info.value)
    assert message.startswith(f"hardware description {path} has invalid fields: ") and "\n" not in message
    assert message.endswith("write it in the format of the example in mixq.hardware.spec")


def test_description_file_and_schema_agree_on_a_full_example(tmp_path: Path) -> None:
    path = tmp_path / "npu.toml"
    path.write_text('name = "npu"\ndescription = " d "\nrestrictions = ["first>=w8a8"]\n'
                    '[kernels]\nconv = ["w4a8", "w8a8"]\ndefault = "w8a8,w8a16"\n'
                    '[cost.latency.default]\nw8a8 = 1\nw8a16 = 1.5\n')
    hw = load_hardware(path)
    assert hw.name == "npu" and hw.description == "d"
    assert [str(p) for p in hw.kernels_for(OpKind.CONV) or ()] == ["w4a8", "w8a8"]
    assert [str(p) for p in hw.kernels_for(OpKind.MATMUL) or ()] == ["w8a8", "w8a16"]
    assert {str(p): v for p, v in (hw.latency or {})["default"].items()} == {"w8a8": 1.0, "w8a16": 1.5}
    assert len(hw.restrictions) == 1 and not hw.restrictions[0].required
    assert "latency" in hw.cost_models()
    anything = tmp_path / "any.yaml"
    anything.write_text("name: any\ndescription:\nkernels: any\ncost:\nrestrictions:\n")
    assert load_hardware(anything).kernels is None and load_hardware(anything).latency is None


def test_each_runtime_has_its_hardware_target() -> None:
    """``--runtime NAME``'s help names the target describing its kernels, and that target loads."""
    from mixq.runtimes import RUNTIMES

    for entry in RUNTIMES.entries():
        target = entry.help.split("--hardware ")[1].rstrip(")").split()[0]
        hw = load_hardware(target)
        assert hw.kernels is not None and Precision.parse("w8a8") in hw.kernels[OpKind.CONV]
