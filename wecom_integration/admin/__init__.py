"""Admin screens of the WeCom app, one module per area."""

from . import config  # noqa: F401

try:  # the event log and inbox
    from . import events  # noqa: F401
except ImportError:  # pragma: no cover - only while the module is being written
    pass
