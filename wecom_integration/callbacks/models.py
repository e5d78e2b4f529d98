"""Callbacks as received: every stored event (exactly once per dedupe key) and the attempts WeCom made."""


from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from wecom_integration.tenancy import ensure_setting

# The ForeignKeys below name WECOM_TENANT_MODEL; a host that does not set it gets the default.
ensure_setting()


class CallbackEvent(models.Model):
    """A decrypted callback, stored once per dedupe key before it is handled."""

    class Kind(models.TextChoices):
        APP = "app", _("App messages and events")
        CONTACTS = "contacts", _("Contact changes")
        CUSTOMERS = "customers", _("Customer changes")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        HANDLED = "handled", _("Handled")
        FAILED = "failed", _("Failed")
        # Failed and given up on by an admin: kept out of the requeue sweep, purged by retention like handled.
        DISMISSED = "dismissed", _("Dismissed")

    # No index of its own: uniq_callback_event starts with the tenant and serves every lookup by it (and
    # the cascade when a tenant is deleted); one index fewer to update on each callback's INSERT.
    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_events", db_index=False
    )
    kind = models.CharField(_("callback URL"), max_length=16, choices=Kind.choices)
    dedupe_key = models.CharField(max_length=255)
    msg_type = models.CharField(_("message type"), max_length=32, blank=True)
    event = models.CharField(_("event"), max_length=64, blank=True)
    change_type = models.CharField(_("change type"), max_length=64, blank=True)
    subject = models.CharField(_("subject"), max_length=128, blank=True)
    from_user = models.CharField(_("from"), max_length=128, blank=True)
    create_time = models.BigIntegerField(_("WeCom time"), default=0)
    xml = models.TextField(_("decrypted XML"))
    # The passive reply given to WeCom, as a dict (see services/inbox.py): stored with the event so that
    # a retried delivery gets the same answer and the inbox shows what was said.
    reply = models.JSONField(_("passive reply"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True, db_index=True)
    handled_at = models.DateTimeField(_("handled at"), null=True, blank=True)
    # When its handling was last queued by anything but the receipt (the requeue sweep, the admin's retry,
    # a failed attempt's retry); empty when only the receipt queued it. The sweep goes by this.
    queued_at = models.DateTimeField(_("queued again at"), null=True, blank=True)

    # Not handled yet, so possibly due to the requeue sweep (a partial index covers exactly these).
    PENDING_STATUSES = (Status.RECEIVED, Status.FAILED)

    class Meta:
        verbose_name = _("callback event")
        verbose_name_plural = _("event log")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "dedupe_key"], name="uniq_callback_event"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "received_at"]),
            # The sweep's rows: few, whatever the size of the log.
            models.Index(
                fields=["received_at"],
                name="callback_event_pending",
                condition=models.Q(status__in=["received", "failed"]),
            ),
        ]
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.kind}:{self.event or self.msg_type}:{self.change_type} {self.subject}"

class CallbackAttempt(models.Model):
    """A recent verification or delivery on one of a tenant's callback URLs, and how it ended: what the
    configuration page shows so an admin knows which field to fix. Bounded: a few rows per URL, written
    at most once per outcome per minute (see services/callback_attempts.py)."""

    class Method(models.TextChoices):
        VERIFY = "verify", _("URL verification")
        DELIVER = "deliver", _("Delivery")

    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_callback_attempts"
    )
    kind = models.CharField(_("callback URL"), max_length=16, choices=CallbackEvent.Kind.choices)
    method = models.CharField(_("request"), max_length=8, choices=Method.choices)
    reason = models.CharField(_("outcome"), max_length=64, blank=True, help_text=_("Empty when accepted."))
    at = models.DateTimeField(_("at"), auto_now_add=True)

    class Meta:
        verbose_name = _("callback attempt")
        verbose_name_plural = _("callback attempts")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["tenant", "kind", "at"])]

    def __str__(self):
        return f"{self.kind} {self.method} {self.reason or 'ok'}"

    @property
    def ok(self):
        return not self.reason
