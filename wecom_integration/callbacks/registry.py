"""The table callbacks dispatch through: each room declares the events it handles, callbacks imports none.

A room's ``handlers`` module registers one row per kind of event it owns::

    @registry.handles("contact", signal=signals.contact_changed)
    def on_contact_change(row, event) -> dict | None: ...

The handler runs in the event's own savepoint inside the handling task; what it returns becomes the
signal's arguments (``None``: nothing changed, no signal). A room may also register a handler for many
events of its kind at once (:func:`handles_many`): the task gives it the batch's events of that kind in
one savepoint, and falls back to the one-event handler, a savepoint each, if it raises. A kind with no
row is stored and handled as "unknown": it only reaches host code through ``event_handled``. A new
capability adds a row here, not a branch in :mod:`wecom_integration.callbacks.handling`, much as
django-anymail maps each vendor's event names onto its own in one table per vendor.

A room may also take over WeCom's passive reply to app callbacks (:func:`replies`): a function that
decides, at receipt and without any WeCom call, what to answer, and one that renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from django.dispatch import Signal


@dataclass(frozen=True)
class Route:
    """One row of the table: who handles events of ``kind``, and the signal sent after it changed something."""

    kind: str
    handler: Callable
    signal: Signal | None
    owner: str
    many: Callable | None = None


@dataclass(frozen=True)
class Replier:
    decide: Callable  # (config, event) -> reply dict or None, at receipt
    render: Callable  # (event, corp_id, reply) -> plaintext XML or None
    summarize: Callable  # (reply) -> a short text for the event log


_routes: dict[str, Route] = {}
_replier: Replier | None = None


def handles(kind: str, *, signal: Signal | None = None):
    """Register the decorated ``handler(row, event)`` for events of ``kind`` (``Event.kind``).

    One handler per kind: registering another for a taken kind is a programming error (two rooms would
    both believe they own it), except the same function again (a module imported twice).
    """

    def register(handler: Callable) -> Callable:
        current = _routes.get(kind)
        owner = f"{handler.__module__}.{handler.__qualname__}"
        if current is not None and current.owner != owner:
            raise ValueError(f"callback events of kind {kind!r} are already handled by {current.owner}")
        _routes[kind] = Route(kind, handler, signal, owner, current.many if current is not None else None)
        return handler

    return register


def handles_many(kind: str):
    """Register the decorated ``handler(items)`` for many events of ``kind`` at once: ``items`` is a list of
    (row, event) in the order they are to be applied, and it returns one result per item, as the
    one-event handler of ``kind`` (registered first, with :func:`handles`) would have returned for each,
    applied one after the other. It runs in one savepoint for all of them; if it raises, that savepoint
    is rolled back and each event runs through the one-event handler in a savepoint of its own, so a
    failing event still fails alone. Worth it where one query or statement can serve many events.
    """

    def register(handler: Callable) -> Callable:
        current = _routes.get(kind)
        if current is None:
            raise ValueError(f"register the one-event handler of {kind!r} callback events first")
        _routes[kind] = replace(current, many=handler)
        return handler

    return register


def route_for(kind: str) -> Route | None:
    return _routes.get(kind)


def table() -> dict[str, Route]:
    """The rows registered so far, by kind (for the docs, the checks and the tests)."""
    return dict(_routes)


def replies(decide: Callable, render: Callable, summarize: Callable) -> None:
    """Register how app callbacks are answered passively (one room does it: messaging's auto-replies)."""
    global _replier
    _replier = Replier(decide, render, summarize)


def replier() -> Replier | None:
    return _replier
