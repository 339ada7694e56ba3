"""Third-party plug-ins from the command line: a toy solver installed outside the package, broken and
clashing plug-ins, and registry names with did-you-mean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mixq
from mixq.cli.configfile import parse_with_config
from mixq.cli.main import build_parser, main
from mixq.testing.plugins import TOY_SOLVER, install_plugin

SRC = str(Path(mixq.__file__).resolve().parents[1])


def mixq_cli(*argv: str, path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m mixq ARGV`` with ``path`` (where plug-ins are installed) on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), SRC])}
    return subprocess.run([sys.executable, "-m", "mixq", *argv], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def toy(root: Path, distribution: str = "toy-mixq-solver", module: str = "toy_mixq_solver") -> Path:
    return install_plugin(root, distribution, {module: TOY_SOLVER}, {"mixq.solvers": {"toy": f"{module}:ToySolver"}})


def test_a_toy_solver_installed_outside_mixq_makes_the_plan(tmp_path: Path) -> None:
    plugins = toy(tmp_path / "site")
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    helped = mixq_cli("search", "--help", path=plugins)
    assert helped.returncode == 0 and "evolution,exhaustive,toy}" in helped.stdout
    assert "toy (Every group at one precision (a toy plug-in).)" in " ".join(helped.stdout.split())
    result = mixq_cli("search", "tiny-cnn", "--data", str(data), "--out", str(tmp_path / "run"), "--solver", "toy",
                      "--solver-option", "pick=w8a16", "--budget", "bops<=1", "--num-samples", "4", "--json", "-q",
                      "--no-report", path=plugins)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["provenance"]["solver"] == "toy"
    assert set(plan["assignment"].values()) == {"w8a16"} and len(plan["assignment"]) == 3
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["solver"] == "toy" and stored["solver_options"] == {"toy": {"pick": "w8a16"}}
    typo = mixq_cli("search", "tiny-cnn", "--data", str(data), "--out", str(tmp_path / "run2"), "--solver", "toy",
                    "--solver-option", "pik=w8a8", path=plugins)
    assert typo.returncode == 2 and "solver toy has no setting 'pik'; did you mean 'pick'? known: pick" in typo.stderr


def test_a_broken_plugin_only_warns(tmp_path: Path) -> None:
    plugins = install_plugin(tmp_path, "broken-mixq-solver", {"broken_mixq_solver": "import no_such_module\n"},
                             {"mixq.solvers": {"broken": "broken_mixq_solver:Solver"}})
    result = mixq_cli("search", "--help", path=plugins)
    assert result.returncode == 0 and "--solver {greedy,ilp,iqp,fallback,evolution,exhaustive}" in result.stdout
    assert "could not load solver plug-in 'broken' from broken-mixq-solver: ModuleNotFoundError" in result.stderr


def test_two_plugins_on_one_name_are_a_plugin_error(tmp_path: Path) -> None:
    toy(tmp_path / "site", "toy-one", "toy_one")
    toy(tmp_path / "site", "toy-two", "toy_two")
    result = mixq_cli("search", "--help", path=tmp_path / "site")
    assert result.returncode == 2
    assert "two solvers are registered as 'toy' (toy-" in result.stderr and "uninstall or rename one" in result.stderr


@pytest.mark.parametrize(("flag", "value", "match"), [
    ("--solver", "gredy", "argument --solver: unknown solver 'gredy'; did you mean 'greedy'?"),
    ("--strategy", "tunqn", "argument --strategy: unknown strategy 'tunqn'; did you mean 'tuneqn'?"),
    ("--cost", "bosp", "argument --cost: unknown cost model 'bosp'; did you mean 'bops'?"),
])
def test_a_misspelt_registry_name_says_did_you_mean(flag: str, value: str, match: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "tiny-cnn", "--data", "x.npz", "--out", "run", flag, value])
    assert exit_info.value.code == 2 and match in capsys.readouterr().err


def test_compare_solvers_checks_names_before_loading_anything(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["search", "no-such-model", "--data", "missing.npz", "--out", "run", "--compare-solvers", "greedy,ilpp"])
    assert code == 2 and "--compare-solvers: unknown solver 'ilpp'; did you mean 'ilp'?" in capsys.readouterr().err


def test_a_config_file_gives_solver_options_as_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "search.yaml"
    path.write_text("model: tiny-cnn\ndata: x.npz\nout: run\nsolver: iqp\n"
                    "solver_options: {top_k: 3, ilp: {time_limit_s: 5}, evolution: {population: 2}}\n")
    args = parse_with_config(["search", "--config-file", str(path)], build_parser)[0]
    assert args.solver_options == ["top_k=3", "ilp.time_limit_s=5", "evolution.population=2"]
    typed = parse_with_config(["search", "--config-file", str(path), "--solver-option", "top_k=4"], build_parser)[0]
    assert typed.solver_options == ["top_k=4"], "typed flags replace the file's, as for every repeatable flag"
    path.write_text("model: tiny-cnn\ndata: x.npz\nout: run\nsolver: gredy\n")
    assert main(["search", "--config-file", str(path)]) == 2
    assert "'solver' in" in (err := capsys.readouterr().err) and "did you mean 'greedy'?" in err
    path.write_text("model: tiny-cnn\ndata: x.npz\nout: run\nsolver: ilp\nsolver-options: {curve_pionts: 5}\n")
    assert main(["search", "--config-file", str(path)]) == 2
    assert "solver ilp has no setting 'curve_pionts'; did you mean 'curve_points'?" in capsys.readouterr().err
