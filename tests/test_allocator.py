"""The allocator setting the CLI makes: applied on glibc Linux, a no-op elsewhere."""

from __future__ import annotations

import platform
import sys

import pytest

from mixq.allocator import prefer_heap_allocations


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="the setting exists only in glibc's malloc")
def test_glibc_accepts_the_setting() -> None:
    assert prefer_heap_allocations() is True


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert prefer_heap_allocations() is False
