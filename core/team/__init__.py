"""Team mode: who may sign in, how, with which role, and what guards the shared server.

- `config`: the configuration (sign-in mode, role lists, upload limits, trusted proxies);
- `identity`: emails as identities (one spelling, no look-alikes);
- `address`: where a sign-in comes from (X-Forwarded-For only from trusted proxies);
- `throttle`: growing waits after wrong tries, per address and per email at that address;
- `sessions`: server-side sessions that sign-out ends, and device cookies;
- `guard`: the ASGI middleware that holds back uploads before sign-in and closes the metrics.

The configuration's names are re-exported here (`from core.team import team_config`).
"""

from core.team.config import (
    ENV,
    MODES,
    TeamConfig,
    exposure_warning,
    held_secret,
    is_loopback,
    password_matches,
    team_config,
)
from core.team.identity import looks_like_email, normalise_email

__all__ = [
    "ENV",
    "MODES",
    "TeamConfig",
    "exposure_warning",
    "held_secret",
    "is_loopback",
    "looks_like_email",
    "normalise_email",
    "password_matches",
    "team_config",
]
