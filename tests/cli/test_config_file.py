"""``--config-file``: flags from YAML/TOML, command-line flags win, unknown keys are one clear error."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from mixq.cli.configfile import parse_with_config, resolved_command
from mixq.cli.main import build_parser, main
from mixq.errors import ConfigError

MODEL_FILE = """
from mixq.backends.torch.testing import ResidualNet

def build():
    return ResidualNet().eval()
"""


def parse(*argv: str):
    return parse_with_config(list(argv), build_parser)[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    return write(tmp_path / "search.yaml", """
model: pkg.mod:build
data: calib.npz
out: runs/a
num-samples: 16
candidates: [w4a8, w8a8, w8a16]
budget: ["bops<=0.5", "sqnr>=20"]
per_tensor_weights: true
act-range: percentile
cache_mb: 512
""")


def test_every_flag_can_come_from_yaml(yaml_file: Path) -> None:
    args = parse("search", "--config-file", str(yaml_file))
    assert args.model == "pkg.mod:build" and args.data == "calib.npz" and args.out == "runs/a"
    assert args.num_samples == 16 and args.cache_mb == 512.0 and isinstance(args.cache_mb, float)
    assert args.candidates == "w4a8,w8a8,w8a16"
    assert args.budget == ["bops<=0.5", "sqnr>=20"]
    assert args.per_tensor_weights is True and args.act_range == "percentile"
    assert args.seed == 0 and args.solver == "greedy", "flags the file leaves out keep their defaults"


def test_command_line_flags_override_the_file(yaml_file: Path) -> None:
    args = parse("search", "other.py:build", "--config-file", str(yaml_file), "--num-samples", "8",
                 "--budget", "bops<=0.25", "--act-range", "mse")
    assert args.model == "other.py:build" and args.num_samples == 8 and args.act_range == "mse"
    assert args.budget == ["bops<=0.25"], "a repeated flag on the command line replaces the file's list"
    assert args.out == "runs/a"


def test_toml_with_a_section_per_command(tmp_path: Path) -> None:
    path = write(tmp_path / "mixq.toml", """
model = "pkg.mod:build"
data = "val.npz"
num-samples = 32

[search]
out = "runs/t"
budget = "agreement>=0.99"
num-samples = 16

[eval]
uniform = "w8a8"
json = true
""")
    search = parse("search", "--config-file", str(path))
    assert search.out == "runs/t" and search.budget == ["agreement>=0.99"] and search.num_samples == 16
    evaluate = parse("eval", "--config-file", str(path))
    assert evaluate.uniform == "w8a8" and evaluate.json is True and evaluate.num_samples == 32
    assert evaluate.data == "val.npz" and evaluate.plan is None


def test_a_typed_exclusive_choice_beats_the_files(tmp_path: Path) -> None:
    path = write(tmp_path / "eval.yaml", "model: m.py:build\ndata: d.npz\nplan: runs/a/plan.json\n")
    args = parse("eval", "--config-file", str(path), "--uniform", "w4a8")
    assert args.uniform == "w4a8" and args.plan is None
    assert parse("eval", "--config-file", str(path)).plan == "runs/a/plan.json"


def test_unknown_key_is_one_error_naming_it_and_the_valid_keys(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "bad.yaml", "model: m.py:build\ndata: d.npz\nout: r\nnum-sample: 16\n")
    assert main(["search", "--config-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'num-sample'" in err and "num-samples" in err and "candidates" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match="unknown key 'plan'.*valid keys: .*budget"):
        parse("search", "--config-file", str(write(tmp_path / "b.yaml", "plan: p.json\n")), "m", "--data", "d",
              "--out", "r")


@pytest.mark.parametrize(("text", "message"), [
    ("num-samples: many\n", "'num-samples'.*must be an integer"),
    ("per-tensor-weights: 1\n", "true or false"),
    ("act-range: best\n", "must be one of minmax, percentile, mse"),
    ("candidates: {w4a8: 1}\n", "candidates: must be one value .* or a list of them, not a mapping"),
    ("- a\n- b\n", "mapping of flag names"),
    ("data: [unclosed\n", "not valid YAML"),
])
def test_bad_values_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=message):
        parse("search", "m.py:build", "--data", "d", "--out", "r", "--config-file", str(path))


def test_unsupported_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.toml"):
        parse("search", "--config-file", str(write(tmp_path / "c.json", "{}")))
    with pytest.raises(ConfigError, match="cannot read"):
        parse("search", "--config-file", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse("search", "--config-file", str(write(tmp_path / "c.toml", "a = = 1")))


def test_required_flags_still_required_when_neither_gives_them(tmp_path: Path) -> None:
    path = write(tmp_path / "partial.yaml", "model: m.py:build\n")
    with pytest.raises(SystemExit):
        parse("search", "--config-file", str(path), "--out", "r")  # --data missing everywhere


def test_resolved_command_reproduces_the_arguments(yaml_file: Path) -> None:
    args = parse("search", "--config-file", str(yaml_file), "--seed", "3")
    command = resolved_command(build_parser, args)
    again = parse(*shlex.split(command)[1:])
    ignored = {"config_file"}
    assert {k: v for k, v in vars(again).items() if k not in ignored} == \
        {k: v for k, v in vars(args).items() if k not in ignored}
    assert "--config-file" not in command


def test_search_from_a_config_file_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.py").write_text(MODEL_FILE)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8))
    path = write(tmp_path / "search.toml", f"""
model = "{tmp_path / 'model.py'}:build"
data = "{tmp_path / 'data.npz'}"
out = "{tmp_path / 'run'}"
num_samples = 8
candidates = ["w4a8", "w8a8"]
budget = ["bops<=0.4"]
no-report = true
quiet = true
""")
    assert main(["search", "--config-file", str(path), "--budget", "bops<=0.3"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["num_samples"] == 8 and config["candidates"] == ["w4a8", "w8a8"]
    assert config["budgets"] == ["bops<=0.3"], "the typed budget replaced the file's"
    recorded = shlex.split(config["command"])
    assert recorded[:2] == ["mixq", "search"] and "--config-file" not in recorded
    assert recorded[recorded.index("--num-samples") + 1] == "8"
    assert not (tmp_path / "run" / "report.html").exists(), "no-report from the file was honoured"


def test_a_file_cannot_set_two_exclusive_choices(tmp_path: Path) -> None:
    path = write(tmp_path / "eval.yaml", "model: m.py:build\ndata: d.npz\neval:\n  plan: p.json\n  float: true\n")
    with pytest.raises(ConfigError, match="plan, float; they exclude each other"):
        parse("eval", "--config-file", str(path))
