"""Part I's flags reach the search: --nondeterministic from a config file, --load-timeout on the line."""

from __future__ import annotations

import json
from pathlib import Path

from mixq.cli.main import main
from mixq.testing.bad_inputs import _model, _npz, _wrapping_model

NOISY = _wrapping_model("out = self.net(x)\n        return out + torch.randn_like(out)")


def test_config_file_key_averages_a_nondeterministic_model(tmp_path: Path) -> None:
    config = tmp_path / "search.yaml"
    config.write_text("nondeterministic: average\naverage-runs: 2\ncandidates: w4a8,w8a8\n")
    out = tmp_path / "run"
    code = main(["search", _model(tmp_path, NOISY), "--data", _npz(tmp_path), "--budget", "bops<=0.5",
                 "--num-samples", "4", "--out", str(out), "-q", "--config-file", str(config), "--load-timeout", "60"])
    assert code == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["quality"]["nondeterminism"]["averaged_runs"] == 2
