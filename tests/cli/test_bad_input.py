"""Every bad input of the catalogue gives one clear line, exit code 2, and no run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixq.cli.main import main
from mixq.testing.bad_inputs import CASES, BadInput


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_clear_error(case: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = case.build(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and case.expect.lower() in err.lower(), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert not (tmp_path / "run").exists()
