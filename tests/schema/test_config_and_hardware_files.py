"""Config files and hardware descriptions: undecodable bytes and wrong number types are ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixq.cli.configfile import read_config_file
from mixq.errors import ConfigError
from mixq.hardware import load_hardware


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_a_non_utf8_config_file_is_a_config_error(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    path.write_bytes(b"num_samples: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"--config-file .* is not UTF-8 text.*save it as UTF-8"):
        read_config_file(path)


def test_a_config_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").mkdir()
    with pytest.raises(ConfigError, match="is a directory, not a file"):
        read_config_file(tmp_path / "c.yaml")


def test_a_non_utf8_hardware_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "npu.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(ConfigError, match="hardware description .*npu.yaml is not UTF-8 text"):
        load_hardware(path)


@pytest.mark.parametrize("value", ["'abc'", ".inf", ".nan", "true", "-1"])
def test_hardware_latency_must_be_a_finite_positive_number(tmp_path: Path, value: str) -> None:
    path = tmp_path / "npu.yaml"
    path.write_text(f"name: npu\nkernels: {{default: [w8a8]}}\ncost: {{latency: {{default: {{w8a8: {value}}}}}}}\n")
    with pytest.raises(ConfigError, match="cost.latency.default.w8a8: must be positive \\(a finite time per MAC"):
        load_hardware(path)


def test_hardware_restrictions_must_be_strings(tmp_path: Path) -> None:
    path = tmp_path / "npu.yaml"
    path.write_text("name: npu\nkernels: {default: [w8a8]}\nrestrictions: [1, 2]\n")
    with pytest.raises(ConfigError, match="`restrictions` must be a list of strings"):
        load_hardware(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("num-samples: {a: 1}\n", r"num-samples: must be one value \(a number, text or true/false\) or a list of "
                                  r"them, not a mapping: write it as on the command line"),
        ("budget: [[\"bops<=0.5\"]]\n", r"budget: a list here holds single values, not a list"),
        ("budget: [null]\n", r"budget: a list here holds single values, not empty \(null\)"),
        ("seed:\n", r"seed: must be one value .* not empty \(null\)"),
        ("solver_options: [{a: 1}]\n", r"solver_options: must be a mapping of option names to values"),
        ("solver_options: {ilp: {time_limit_s: [1, 2]}}\n",
         r"solver_options: option ilp.time_limit_s must be one value .* not a list"),
        ("num_samples: {a: 1}\nseed: [[0]]\n", r"num_samples: must be one value.*; seed: a list here holds"),
    ],
)
def test_config_file_shapes_are_checked_by_the_schema(tmp_path: Path, text: str, match: str) -> None:
    from mixq.cli.main import build_parser
    from mixq.cli.configfile import parse_with_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    argv = ["search", "m.py:build", "--data", "d", "--out", "r", "--config-file", str(path)]
    with pytest.raises(ConfigError, match=match) as info:
        parse_with_config(argv, build_parser)
    assert str(info.value).startswith(f"--config-file {path} has invalid fields: ") and "\n" not in str(info.value)


def test_config_file_good_shapes_pass(tmp_path: Path) -> None:
    from mixq.cli.main import build_parser
    from mixq.cli.configfile import parse_with_config

    path = tmp_path / "c.yaml"
    path.write_text("num-samples: 16\nbudget: [\"bops<=0.5\"]\ncandidates: [w4a8, w8a8]\n"
                    "solver_options: {ilp: {time_limit_s: 5}, curve_points: 50}\nper-tensor-weights: true\n")
    args, _ = parse_with_config(["search", "m.py:build", "--data", "d", "--out", "r", "--config-file", str(path)],
                                build_parser)
    assert args.num_samples == 16 and args.budget == ["bops<=0.5"] and args.per_tensor_weights
    assert sorted(args.solver_options) == ["curve_points=50", "ilp.time_limit_s=5"]
