"""Admin screens of the WeCom app, one module per area."""

import importlib

from . import config  # noqa: F401

# Areas written by their issues' work; imported when present.
for _area in ("events", "directory", "messaging"):
    try:
        importlib.import_module(f"{__name__}.{_area}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while an area is being written
        if exc.name != f"{__name__}.{_area}":
            raise
