"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the repository; tests that need it skip in a clone without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present: {SHARED_DATA} (benchmark data lives in ../shared)")
    return SHARED_DATA
