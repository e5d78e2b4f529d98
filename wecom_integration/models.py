"""The tenant's WeCom configuration, its local mirror of the WeCom organisation, bindings, callback events,
customers, sync runs and the message log. Every row belongs to one tenant."""

import base64
import binascii
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from tenants.models import Tenant

from .fields import EncryptedTextField

TOKEN_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")
CORP_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


def validate_token(value):
    if value and not TOKEN_RE.match(value):
        raise ValidationError(_("Token must be 1 to 32 letters or digits."), code="invalid_token")


def validate_aes_key(value):
    if not value:
        return
    if len(value) != 43:
        raise ValidationError(_("EncodingAESKey must be exactly 43 characters."), code="invalid_aes_key")
    try:
        key = base64.b64decode(value + "=", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValidationError(
            _("EncodingAESKey must be 43 letters and digits that decode to a 32-byte key."),
            code="invalid_aes_key",
        )


def validate_corp_id(value):
    if not CORP_ID_RE.match(value or ""):
        raise ValidationError(_("CorpID must be letters and digits, like ww1234567890abcdef."), code="invalid_corp_id")


class WeComConfig(models.Model):
    """One per tenant: the credentials entered in 系统管理 → 第三方配置 → 企业微信集成 (seed 001)."""

    # The secret kinds and the callback kinds, as the client and the callback views name them.
    SECRET_FIELDS = ("secret", "contact_secret", "customer_secret", "archive_secret")
    WRITE_ONLY_FIELDS = (
        "secret",
        "contact_secret",
        "contact_token",
        "contact_aes_key",
        "customer_secret",
        "customer_token",
        "customer_aes_key",
        "app_token",
        "app_aes_key",
        "archive_secret",
        "archive_private_key",
    )
    CALLBACK_KINDS = {
        # kind in the URL -> (token field, AES key field)
        "app": ("app_token", "app_aes_key"),
        "contacts": ("contact_token", "contact_aes_key"),
        "customers": ("customer_token", "customer_aes_key"),
    }

    tenant = models.OneToOneField(
        Tenant, on_delete=models.CASCADE, related_name="wecom_config", verbose_name=_("tenant")
    )
    corp_id = models.CharField(
        _("CorpID (企业ID)"),
        max_length=64,
        unique=True,
        validators=[validate_corp_id],
        help_text=_("My Enterprise → Enterprise Information → CorpID. JeecgBoot calls it AppKey."),
        error_messages={"unique": _("This CorpID is already used by another tenant (AppKey重复).")},
    )
    agent_id = models.PositiveIntegerField(
        _("AgentId (应用ID)"), help_text=_("The self-built app's AgentId, e.g. 1000002.")
    )
    secret = EncryptedTextField(_("app Secret"), blank=True, help_text=_("The self-built app's Secret."))
    contact_secret = EncryptedTextField(_("contact Secret (通讯录同步Secret)"), blank=True)
    contact_token = EncryptedTextField(_("contact-change Token"), blank=True, validators=[validate_token])
    contact_aes_key = EncryptedTextField(
        _("contact-change EncodingAESKey"), blank=True, validators=[validate_aes_key]
    )
    customer_secret = EncryptedTextField(
        _("customer Secret (客户联系Secret)"),
        blank=True,
        help_text=_("Leave blank to use the app Secret (newer corps)."),
    )
    customer_token = EncryptedTextField(_("customer-change Token"), blank=True, validators=[validate_token])
    customer_aes_key = EncryptedTextField(
        _("customer-change EncodingAESKey"), blank=True, validators=[validate_aes_key]
    )
    app_token = EncryptedTextField(_("app message Token"), blank=True, validators=[validate_token])
    app_aes_key = EncryptedTextField(_("app message EncodingAESKey"), blank=True, validators=[validate_aes_key])
    archive_secret = EncryptedTextField(_("session-archive Secret (会话存档)"), blank=True)
    archive_private_key = EncryptedTextField(_("session-archive private key"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)

    auto_reply = models.TextField(
        _("auto-reply"), blank=True, help_text=_("If set, every text message to the app gets this text back.")
    )
    allow_signup = models.BooleanField(
        _("create accounts at sign-in"),
        default=False,
        help_text=_("A WeCom user with no account in this tenant gets one when signing in, as the sync would."),
    )
    two_step_verification = models.BooleanField(_("two-step verification"), default=False)
    periodic_sync = models.BooleanField(_("periodic sync"), default=False)
    sync_interval_minutes = models.PositiveIntegerField(_("sync interval (minutes)"), default=1440)
    menu = models.JSONField(_("app menu"), default=dict, blank=True)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("WeCom configuration")
        verbose_name_plural = _("WeCom configurations")

    def __str__(self):
        return f"{self.tenant} · {self.corp_id}"

    def __repr__(self):
        # Never the secrets.
        return f"<WeComConfig tenant={self.tenant_id} corp_id={self.corp_id} agent_id={self.agent_id}>"

    def callback_credentials(self, kind):
        """(token, aes_key) for a callback URL kind, or (\"\", \"\") when not configured."""
        token_field, key_field = self.CALLBACK_KINDS[kind]
        return getattr(self, token_field), getattr(self, key_field)

    @property
    def effective_customer_secret(self):
        return self.customer_secret or self.secret


class Department(models.Model):
    """The tenant's mirror of one WeCom department (the sync and the contact callbacks fill it)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_departments")
    dept_id = models.BigIntegerField(_("department id"))
    name = models.CharField(_("name"), max_length=128)
    name_en = models.CharField(_("English name"), max_length=128, blank=True)
    parent_id = models.BigIntegerField(_("parent id"), null=True, blank=True)
    order = models.BigIntegerField(_("order"), default=0)
    leaders = models.JSONField(_("leaders"), default=list, blank=True)
    removed = models.BooleanField(_("removed from WeCom"), default=False)
    # False when the last sync saw the id but could not read the department: it is outside the app's
    # visible range (可见范围). Kept as it was, never marked removed for that.
    visible = models.BooleanField(_("in the app's visible range"), default=True)
    # CreateTime of the newest contact-change event applied: callbacks can arrive out of order, and an
    # older one must not undo a newer one (or bring back a removed department).
    last_event_time = models.BigIntegerField(_("last change event time"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("WeCom department")
        verbose_name_plural = _("WeCom departments")
        constraints = [models.UniqueConstraint(fields=["tenant", "dept_id"], name="uniq_department")]
        ordering = ["tenant", "parent_id", "order", "dept_id"]

    def __str__(self):
        return f"{self.name} ({self.dept_id})"


class WeComUser(models.Model):
    """The tenant's mirror of one WeCom member."""

    class Status(models.IntegerChoices):
        ACTIVE = 1, _("Active")
        DISABLED = 2, _("Disabled")
        NOT_ACTIVATED = 4, _("Not activated")
        QUIT = 5, _("Quit")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_users")
    userid = models.CharField(_("WeCom userid"), max_length=64)
    name = models.CharField(_("name"), max_length=128, blank=True)
    departments = models.JSONField(_("departments"), default=list, blank=True)
    main_department = models.BigIntegerField(_("main department"), null=True, blank=True)
    is_leader_in_dept = models.JSONField(default=list, blank=True)
    position = models.CharField(_("position"), max_length=128, blank=True)
    mobile = models.CharField(_("mobile"), max_length=32, blank=True)
    email = models.CharField(_("email"), max_length=128, blank=True)
    avatar = models.CharField(_("avatar"), max_length=512, blank=True)
    gender = models.CharField(_("gender"), max_length=4, blank=True)
    status = models.PositiveSmallIntegerField(_("status"), choices=Status.choices, default=Status.ACTIVE)
    removed = models.BooleanField(_("removed from WeCom"), default=False)
    # False when the last sync found the member in WeCom but could not read them: outside the app's
    # visible range (可见范围). Kept as they were, never deactivated for that.
    visible = models.BooleanField(_("in the app's visible range"), default=True)
    # CreateTime of the newest contact-change event applied: an older update arriving late is ignored,
    # so it cannot overwrite newer fields or bring back a deleted member.
    last_event_time = models.BigIntegerField(_("last change event time"), default=0)
    # CreateTime of the event that last set each field: an older event that arrives late (a redelivered
    # task) still fills the fields no newer event set — a create_user handled after its update_user keeps
    # its departments — and never overwrites a newer value.
    field_times = models.JSONField(default=dict, blank=True)
    # A hash of the synced fields: an unchanged re-sync compares hashes and writes nothing.
    fingerprint = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("WeCom user")
        verbose_name_plural = _("WeCom users")
        constraints = [models.UniqueConstraint(fields=["tenant", "userid"], name="uniq_wecom_user")]
        indexes = [models.Index(fields=["tenant", "name"])]
        ordering = ["tenant", "userid"]

    def __str__(self):
        return f"{self.name} ({self.userid})"

    @property
    def is_active_in_wecom(self):
        return not self.removed and self.status == self.Status.ACTIVE


class Binding(models.Model):
    """A system user bound to a WeCom user, one-to-one per tenant (seed 001's bound users)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_bindings")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wecom_bindings", verbose_name=_("user")
    )
    wecom_user = models.ForeignKey(
        WeComUser, on_delete=models.CASCADE, related_name="bindings", verbose_name=_("WeCom user")
    )
    is_active = models.BooleanField(
        _("active"), default=True, help_text=_("Turned off when the WeCom user quits or is disabled.")
    )
    created_at = models.DateTimeField(_("bound at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("binding")
        verbose_name_plural = _("bindings")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="uniq_binding_user"),
            models.UniqueConstraint(fields=["tenant", "wecom_user"], name="uniq_binding_wecom_user"),
        ]

    def __str__(self):
        return f"{self.user} ↔ {self.wecom_user.userid}"


class AuditLog(models.Model):
    """Who bound, unbound, created or approved what, and when."""

    class Action(models.TextChoices):
        BIND = "bind", _("Bound")
        UNBIND = "unbind", _("Unbound")
        CREATE_ACCOUNT = "create_account", _("Account created")
        PENDING = "pending", _("Membership pending approval")
        APPROVE = "approve", _("Approved")
        REJECT = "reject", _("Rejected")
        DEACTIVATE = "deactivate", _("Deactivated")
        CONFIGURE = "configure", _("Configuration changed")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_audit")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(_("action"), max_length=32, choices=Action.choices)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    wecom_userid = models.CharField(_("WeCom userid"), max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("audit record")
        verbose_name_plural = _("audit log")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_action_display()} {self.wecom_userid}"


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

    # No index of its own: uniq_callback_event starts with the tenant and serves every lookup by it (and
    # the cascade when a tenant is deleted); one index fewer to update on each callback's INSERT.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_events", db_index=False)
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


class InboxMessage(models.Model):
    """Seed 000's "space": app messages from employees and our replies, as conversations per WeCom user."""

    class Direction(models.TextChoices):
        IN = "in", _("Received")
        OUT = "out", _("Sent")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_inbox")
    wecom_userid = models.CharField(_("WeCom userid"), max_length=64)
    direction = models.CharField(_("direction"), max_length=4, choices=Direction.choices)
    msg_type = models.CharField(_("message type"), max_length=32)
    content = models.TextField(_("content"), blank=True)
    event = models.OneToOneField(
        CallbackEvent, on_delete=models.CASCADE, null=True, blank=True, related_name="inbox_message"
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


class ExternalContact(models.Model):
    """A customer (external contact) of the tenant, maintained by the customer sync and callbacks."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_external_contacts")
    external_userid = models.CharField(_("external userid"), max_length=128)
    name = models.CharField(_("name"), max_length=128, blank=True)
    type = models.PositiveSmallIntegerField(_("type"), default=1, help_text=_("1 WeChat user, 2 WeCom user"))
    avatar = models.CharField(_("avatar"), max_length=512, blank=True)
    gender = models.PositiveSmallIntegerField(_("gender"), default=0)
    corp_name = models.CharField(_("company"), max_length=128, blank=True)
    removed = models.BooleanField(_("deleted"), default=False)
    removed_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    fingerprint = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_userid"], name="uniq_external_contact")
        ]

    def __str__(self):
        return self.name or self.external_userid


class FollowUser(models.Model):
    """A member of the tenant who follows (has added) a customer."""

    contact = models.ForeignKey(ExternalContact, on_delete=models.CASCADE, related_name="follow_users")
    userid = models.CharField(_("WeCom userid"), max_length=64)
    remark = models.CharField(_("remark"), max_length=128, blank=True)
    add_time = models.BigIntegerField(_("added at"), default=0)
    state = models.CharField(_("state"), max_length=64, blank=True)
    removed = models.BooleanField(_("deleted"), default=False)
    removed_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    # False when the last customer sync could not see this relation: its member is outside the visible
    # range of the app that reads customers. Kept as it was, never ended for that.
    visible = models.BooleanField(_("in the app's visible range"), default=True)

    class Meta:
        verbose_name = _("follow user")
        verbose_name_plural = _("follow users")
        constraints = [models.UniqueConstraint(fields=["contact", "userid"], name="uniq_follow_user")]

    def __str__(self):
        return f"{self.userid} → {self.contact_id}"


class SyncRun(models.Model):
    """One contact or customer sync: progress while it runs, its counts and errors after."""

    class Kind(models.TextChoices):
        CONTACTS = "contacts", _("Contacts")
        CUSTOMERS = "customers", _("Customers")

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        RUNNING = "running", _("Running")
        REVIEW = "review", _("Waiting for review")
        CONFIRMED = "confirmed", _("Confirmed")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_sync_runs")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.CONTACTS)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    phase = models.CharField(_("phase"), max_length=32, blank=True)
    done = models.PositiveIntegerField(_("done"), default=0)
    total = models.PositiveIntegerField(_("total"), default=0)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    errors = models.JSONField(_("errors"), default=list, blank=True)
    fallback_mode = models.BooleanField(_("fallback mode"), default=False)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("sync run")
        verbose_name_plural = _("sync runs")
        ordering = ["-created_at", "-id"]
        constraints = [
            # One sync at a time per tenant and kind, enforced by the database, not only by the view.
            models.UniqueConstraint(
                fields=["tenant", "kind"],
                condition=models.Q(status__in=["pending", "running"]),
                name="one_active_sync_per_tenant",
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} ({self.get_status_display()})"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class SyncProposal(models.Model):
    """A proposed pairing of a WeCom user with a tenant account, for the review screen."""

    class Action(models.TextChoices):
        BIND = "bind", _("Bind")
        CREATE = "create", _("Create a new account")
        SKIP = "skip", _("Skip")

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="proposals")
    wecom_user = models.ForeignKey(WeComUser, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    action = models.CharField(_("action"), max_length=8, choices=Action.choices, default=Action.SKIP)
    ambiguous = models.BooleanField(_("ambiguous name"), default=False)
    note = models.CharField(_("note"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("proposal")
        verbose_name_plural = _("proposals")
        constraints = [models.UniqueConstraint(fields=["run", "wecom_user"], name="uniq_proposal")]

    def __str__(self):
        return f"{self.wecom_user_id} → {self.user_id} ({self.action})"


class MessageLog(models.Model):
    """Every message sent through the app: who sent what to whom, and what WeCom said."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        PARTIAL = "partial", _("Partly delivered")
        FAILED = "failed", _("Failed")

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="wecom_messages")
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
