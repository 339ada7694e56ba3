"""Hypothesis settings for the fuzz tests.

By default the examples are derandomized (the same ones every run, so the suite cannot turn red by luck)
and nothing is written to a ``.hypothesis`` example database. ``MIXQ_FUZZ=explore`` draws fresh random
examples, ten times as many (``fuzzkit.examples``), to hunt for new failures by hand.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("mixq", database=None, deadline=None, derandomize=True)
settings.register_profile("mixq-explore", database=None, deadline=None)
settings.load_profile("mixq-explore" if os.environ.get("MIXQ_FUZZ") == "explore" else "mixq")
