"""Hypothesis profiles for the fuzz suite, chosen with HYPOTHESIS_PROFILE (default "ci").

- ci: a few thousand cases over the whole folder, derandomised (the same cases every run, so a
  red CI run is reproducible and never flaky), well under two minutes on two cores.
- nightly: ten times more cases per test, random seeds: new inputs every night.
- dev: a quick smoke while editing.

No deadline: this machine is shared, and wall-clock noise is not a bug. Tests that are costly per
case take a fraction of the profile's budget with `scaled()` from tests.support.fuzzing.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

settings.register_profile("ci", max_examples=400, derandomize=True, **_COMMON)
settings.register_profile("nightly", max_examples=4000, **_COMMON)
settings.register_profile("dev", max_examples=50, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
