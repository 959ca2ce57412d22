"""The relay: a small ASGI app that turns ticks and provider webhooks into work and status.

`create_app(settings)` builds it; `regnotify relay` serves it with uvicorn.
"""

from __future__ import annotations

from tasks.relay.app import create_app
from tasks.relay.runtime import Relay, RelayConfigError

__all__ = ["Relay", "RelayConfigError", "create_app"]
