"""A mixq bug (an InternalError or any exception mixq did not raise on purpose) is reported as a bug:
one line that says so and asks for a report, exit code 3, the traceback with ``-v``."""

from __future__ import annotations

import argparse

import pytest
from rich.console import Console

from mixq.cli import main as cli
from mixq.errors import DataError, internal
from mixq.version import __version__


def broken_inspect(args: argparse.Namespace, console: Console) -> int:
    raise internal("the quantizer groups do not cover the graph")


def crashing_inspect(args: argparse.Namespace, console: Console) -> int:
    return {}["missing"]


def user_error_inspect(args: argparse.Namespace, console: Console) -> int:
    raise DataError("no images in data/")


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command, *flags: str) -> tuple[int, str]:
    monkeypatch.setitem(cli._COMMANDS, "inspect", command)
    code = cli.main(["inspect", "model.onnx", *flags])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def test_an_internal_error_says_it_is_a_mixq_bug_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(monkeypatch, capsys, broken_inspect)
    assert code == cli.EXIT_BUG == 3
    assert err.count("\n") == 1, err
    assert err.startswith("error: mixq bug: the quantizer groups do not cover the graph. Please report it")
    assert "with the command and `mixq --version`" in err
    assert f"this is mixq {__version__}" in err
    assert "-v" in err and "Traceback" not in err


def test_with_verbose_the_traceback_is_shown_above_the_line(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(monkeypatch, capsys, broken_inspect, "-v")
    assert code == 3
    assert err.startswith("Traceback (most recent call last):")
    assert "in broken_inspect" in err and "mixq.errors.InternalError: mixq bug: the quantizer groups" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: mixq bug: the quantizer groups do not cover the graph.")
    assert "-v to see" not in last


def test_an_unexpected_exception_is_a_mixq_bug_too(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(monkeypatch, capsys, crashing_inspect)
    assert code == 3
    assert err.startswith("error: mixq bug: unexpected KeyError: 'missing'. Please report it")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_user_error_is_still_the_users(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(monkeypatch, capsys, user_error_inspect)
    assert (code, err) == (2, "error: no images in data/\n")
