"""Helpers shared by the hypothesis fuzz tests."""

from __future__ import annotations

from hypothesis import settings


def scaled(fraction: float, minimum: int = 10) -> settings:
    """Settings with `fraction` of the loaded profile's max_examples (for costly cases).

    Call it at decoration time: tests/fuzz/conftest.py has loaded the profile by then.
    """
    return settings(max_examples=max(minimum, int(settings.default.max_examples * fraction)))
