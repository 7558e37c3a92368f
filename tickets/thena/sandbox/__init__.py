"""A fake Thena API (thena-api.md §8) for tests, the demo and benchmarks.

Pure WSGI and stdlib: no Django imports, so it runs in-process behind
`httpx.WSGITransport` or over HTTP through `manage.py thena_sandbox`.
"""

import threading

from .app import (
    DEMO_API_KEY,
    RecordedRequest,
    SandboxApp,
    SandboxConfig,
    SandboxConnectionDropped,
)
from .validation import ApiError

__all__ = [
    "DEMO_API_KEY",
    "ApiError",
    "RecordedRequest",
    "SandboxApp",
    "SandboxConfig",
    "SandboxConnectionDropped",
    "default_sandbox",
]

_default: SandboxApp | None = None
_default_lock = threading.Lock()


def default_sandbox() -> SandboxApp:
    """The process-wide sandbox used when no Thena base URL is configured."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SandboxApp()
        return _default
