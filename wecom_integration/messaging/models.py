"""Messaging's tables: the inbox of what members sent to the app, and the log of what the app sent."""


from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from wecom_integration.tenancy import ensure_setting

# The ForeignKeys below name WECOM_TENANT_MODEL; a host that does not set it gets the default.
ensure_setting()


class InboxMessage(models.Model):
    """Seed 000's "space": app messages from employees and our replies, as conversations per WeCom user."""

    class Direction(models.TextChoices):
        IN = "in", _("Received")
        OUT = "out", _("Sent")

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_inbox")
    wecom_userid = models.CharField(_("WeCom userid"), max_length=64)
    direction = models.CharField(_("direction"), max_length=4, choices=Direction.choices)
    msg_type = models.CharField(_("message type"), max_length=32)
    content = models.TextField(_("content"), blank=True)
    event = models.OneToOneField(
        # SET_NULL: the inbox keeps its messages for its own retention when old callback events are purged.
        "wecom_integration.CallbackEvent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inbox_message",
    )
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)
    read = models.BooleanField(_("read"), default=False)

    class Meta:
        verbose_name = _("inbox message")
        verbose_name_plural = _("inbox")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "wecom_userid", "created_at"])]

    def __str__(self):
        return f"{self.wecom_userid}: {self.content[:40]}"

class MessageLog(models.Model):
    """Every message sent through the app: who sent what to whom, and what WeCom said."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        PARTIAL = "partial", _("Partly delivered")
        FAILED = "failed", _("Failed")

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_messages")
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(_("source"), max_length=32, blank=True)
    msgtype = models.CharField(_("message type"), max_length=16)
    content = models.JSONField(_("content"), default=dict)
    touser = models.TextField(_("to users"), blank=True)
    toparty = models.TextField(_("to departments"), blank=True)
    totag = models.TextField(_("to tags"), blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    msgids = models.JSONField(_("msgid"), default=list, blank=True)
    invalid_users = models.JSONField(_("invalid users"), default=list, blank=True)
    # Of invalid_users, the members WeCom has but the app cannot see (outside its visible range, 可见范围).
    out_of_range_users = models.JSONField(_("outside the app's visible range"), default=list, blank=True)
    invalid_parties = models.JSONField(default=list, blank=True)
    invalid_tags = models.JSONField(default=list, blank=True)
    errcode = models.IntegerField(_("errcode"), default=0)
    errmsg = models.CharField(_("errmsg"), max_length=255, blank=True)
    calls = models.PositiveIntegerField(_("API calls"), default=0)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("sent message")
        verbose_name_plural = _("message log")
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.msgtype} #{self.pk} ({self.status})"
