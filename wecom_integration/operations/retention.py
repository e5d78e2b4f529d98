"""Retention: old rows deleted in bounded batches, per tenant, by ``WECOM["RETENTION"]``.

What is kept, and for how long (days; None keeps for ever), with the defaults of
:data:`wecom_integration.conf.RETENTION_DEFAULTS`:

- handled or dismissed callback events, by the callback URL they came to (app 30, contacts 90, customers 90).
  An event that failed or was never handled is kept whatever its age, until it is handled or an admin
  dismisses it;
- callback attempts (the configuration page's recent verifications and deliveries) 14;
- the message log 180, clicks on template cards 180, the inbox 365, the audit log 3 years.

Deleting never holds a lock callbacks need: each batch is one short transaction that selects up to
``batch_size`` primary keys of old rows (through an index on time) and deletes exactly those rows by
primary key. Receiving a callback only INSERTs a new row and handling one locks only its own rows, so
neither ever waits on a purge for longer than one batch's delete of rows it does not touch. Inbox
messages of purged events keep their text (their link to the event is set to NULL in the same batch), and
card clicks outlive the callback and the log entry of their card the same way.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from django.db import connections, router, transaction
from django.utils import timezone

from wecom_integration.callbacks.models import CallbackAttempt, CallbackEvent
from wecom_integration.conf import RETENTION_DEFAULTS, wecom_settings
from wecom_integration.directory.models import AuditLog
from wecom_integration.messaging.models import CardClick, InboxMessage, MessageLog

PURGEABLE_EVENT_STATUSES = (CallbackEvent.Status.HANDLED, CallbackEvent.Status.DISMISSED)


def policy() -> dict:
    """The retention settings: the defaults with ``WECOM["RETENTION"]`` over them (one level deep)."""
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in RETENTION_DEFAULTS.items()}
    for key, value in (wecom_settings.RETENTION or {}).items():
        if key not in merged:
            raise ValueError(f'unknown WECOM["RETENTION"] key {key!r}; known: {", ".join(sorted(merged))}')
        if isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


@dataclass
class Target:
    """One kind of row to purge: a queryset of the old rows of one tenant, and its label."""

    label: str
    model: type
    days: int | None
    time_field: str
    filters: dict = field(default_factory=dict)

    def old_rows(self, tenant_id, now):
        cutoff = now - dt.timedelta(days=self.days)
        return self.model.objects.filter(
            tenant_id=tenant_id, **{f"{self.time_field}__lt": cutoff}, **self.filters
        ).order_by()


def targets(settings: dict | None = None) -> list[Target]:
    settings = settings or policy()
    found = [
        Target(f"callback events ({kind})", CallbackEvent, days, "received_at",
               {"kind": kind, "status__in": PURGEABLE_EVENT_STATUSES})
        for kind, days in settings["callback_events"].items()
    ]
    found += [
        Target("callback attempts", CallbackAttempt, settings["callback_attempts"], "at"),
        Target("message log", MessageLog, settings["message_logs"], "created_at"),
        Target("card clicks", CardClick, settings["card_clicks"], "created_at"),
        Target("inbox", InboxMessage, settings["inbox_messages"], "created_at"),
        Target("audit log", AuditLog, settings["audit_log"], "created_at"),
    ]
    return [target for target in found if target.days is not None]


def _delete_ids(model, ids) -> int:
    """DELETE the rows with these primary keys in one statement (no ORM collector: it would load each
    row, XML and all, only to delete it); what points at the rows (inbox messages and card clicks at events,
    card clicks at their card's log entry) is unlinked first, as on_delete=SET_NULL would."""
    if model is CallbackEvent:
        InboxMessage.objects.filter(event_id__in=ids).update(event=None)
        CardClick.objects.filter(event_id__in=ids).update(event=None)
    elif model is MessageLog:
        CardClick.objects.filter(message_id__in=ids).update(message=None)
    alias = router.db_for_write(model)
    connection = connections[alias]
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.pk.column)
    placeholders = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({placeholders})", list(ids))  # noqa: S608
        return cursor.rowcount


def purge_tenant(tenant_id, *, now=None, batch_size=None, dry_run=False, pause=0.0, settings=None) -> dict:
    """Delete one tenant's rows past retention; {label: rows deleted (or, dry, due)}."""
    settings = settings or policy()
    now = now or timezone.now()
    batch_size = int(batch_size or settings["batch_size"])
    counts = {}
    for target in targets(settings):
        rows = target.old_rows(tenant_id, now)
        if dry_run:
            counts[target.label] = rows.count()
            continue
        deleted = 0
        while True:
            with transaction.atomic(using=router.db_for_write(target.model)):
                ids = list(rows.values_list("pk", flat=True)[:batch_size])
                if ids:
                    deleted += _delete_ids(target.model, ids)
            if len(ids) < batch_size:
                break
            if pause:
                time.sleep(pause)
        counts[target.label] = deleted
    return counts


def purge(*, tenant_ids=None, now=None, batch_size=None, dry_run=False, pause=0.0) -> dict:
    """Purge every tenant (or those of ``tenant_ids``); {tenant id: {label: rows}}."""
    from wecom_integration.tenancy import get_tenant_model

    settings = policy()
    tenants = get_tenant_model()._default_manager.order_by("pk").values_list("pk", flat=True)
    if tenant_ids is not None:
        tenants = tenants.filter(pk__in=list(tenant_ids))
    return {
        tenant_id: purge_tenant(tenant_id, now=now, batch_size=batch_size, dry_run=dry_run, pause=pause,
                                settings=settings)
        for tenant_id in tenants
    }
