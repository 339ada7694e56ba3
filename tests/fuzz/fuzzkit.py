"""Shared pieces of the fuzz tests: run the CLI in-process, judge its outcome, snapshot a folder.

The property every fuzz test checks is the one of the issue: any input ends in success (exit 0) or a
user error (exit 2 and one line on stderr starting with ``error:``), never a mixq bug (exit 3), never a
traceback, never a write outside ``--out``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from hypothesis import settings

from mixq.cli.main import main


@dataclass(frozen=True)
class Outcome:
    """What one in-process ``mixq`` call ended with."""

    argv: tuple[str, ...]
    code: int
    err: str

    def check(self) -> None:
        """Success or one clean user error; anything else fails with the call and its stderr."""
        where = f"mixq {' '.join(self.argv)} -> exit {self.code}\n{self.err}"
        assert "Traceback" not in self.err, where
        assert self.code in (0, 2), where
        if self.code == 2:
            lines = self.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), where


def run(argv: list[str]) -> Outcome:
    """``mixq ARGV`` in this process with stdout and stderr captured (rich prints to sys.stderr at call time)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return Outcome(tuple(argv), code, err.getvalue())


def snapshot(root: Path, skip: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``root`` except ``skip`` and what is under it: kind and content hash."""
    entries: dict[str, tuple[str, bytes]] = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        if path.is_symlink():
            entries[str(path)] = ("link", str(path.readlink()).encode())
        elif path.is_dir():
            entries[str(path)] = ("dir", b"")
        else:
            entries[str(path)] = ("file", hashlib.sha256(path.read_bytes()).digest())
    return entries


#: ``MIXQ_FUZZ=explore`` draws fresh random examples, ten times as many (see conftest.py).
EXPLORE = os.environ.get("MIXQ_FUZZ") == "explore"


def examples(n: int) -> settings:
    """Settings for a property test: ``n`` examples (ten times that when exploring), no deadline."""
    return settings(max_examples=n * 10 if EXPLORE else n, deadline=None)
