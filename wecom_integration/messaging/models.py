"""Messaging's tables: the inbox of what members sent to the app, the log of what the app sent, and the
clicks on the template cards it sent."""


from django.conf import settings
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from wecom_integration.tenancy import ensure_setting

# The disabled button's text after a click stays short, as WeCom's button texts are (doc 94888).
REPLACE_NAME_MAX_CHARS = 32

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
    # A template card's task_id (unique in the app, so in the tenant): what its clicks come back with.
    task_id = models.CharField(_("card task_id"), max_length=128, blank=True, default="")
    recalled_at = models.DateTimeField(_("recalled at"), null=True, blank=True)
    recalled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("sent message")
        verbose_name_plural = _("message log")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "task_id"], condition=~models.Q(task_id=""), name="wecom_message_task_id_unique"
            )
        ]

    def __str__(self):
        return f"{self.msgtype} #{self.pk} ({self.status})"


class CardClick(models.Model):
    """A member's click on a template card the app sent (template_card_event), and how the app answered it:
    the card update (message/update_template_card) sent with the click's single-use response_code.

    https://developer.work.weixin.qq.com/document/path/90240, https://developer.work.weixin.qq.com/document/path/94888
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for the update")
        UPDATED = "updated", _("Card updated")
        UNCHANGED = "unchanged", _("Left as it was")
        FAILED = "failed", _("Update failed")

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_card_clicks")
    message = models.ForeignKey(
        MessageLog, on_delete=models.SET_NULL, null=True, blank=True, related_name="clicks", verbose_name=_("card")
    )
    event = models.OneToOneField(
        "wecom_integration.CallbackEvent", on_delete=models.SET_NULL, null=True, blank=True, related_name="card_click"
    )
    wecom_userid = models.CharField(_("WeCom userid"), max_length=64)
    task_id = models.CharField(_("card task_id"), max_length=128)
    card_type = models.CharField(_("card type"), max_length=32, blank=True)
    event_key = models.CharField(_("button key"), max_length=1024, blank=True)
    selected_items = models.JSONField(_("choices"), default=list, blank=True)
    choice = models.CharField(_("choice"), max_length=255, blank=True)
    # Single use, 72 hours: kept until the update spends it, then cleared.
    response_code = models.CharField(max_length=255, blank=True, editable=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    update = models.JSONField(_("update sent"), default=dict, blank=True)
    errcode = models.IntegerField(_("errcode"), default=0)
    errmsg = models.CharField(_("errmsg"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("card click")
        verbose_name_plural = _("card clicks")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "task_id"])]

    def __str__(self):
        return f"{self.wecom_userid} → {self.task_id}: {self.choice or self.event_key}"

    def done_label(self):
        """The default answer to the click: the choice shown as done, the disabled button's text."""
        label = gettext("%(choice)s ✓") % {"choice": self.choice} if self.choice else gettext("Done ✓")
        return label[:REPLACE_NAME_MAX_CHARS]
