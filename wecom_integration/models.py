"""The tenant's WeCom configuration, its local mirror of the WeCom organisation, bindings, callback events,
customers, sync runs and the message log. Every row belongs to one tenant."""

import base64
import binascii
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from wecom_integration.fields import EncryptedTextField
from wecom_integration.tenancy import ensure_setting

# The migrations and the tenant foreign keys below read it (issue 24).
ensure_setting()

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


def validate_proxy_url(value):
    """An outbound proxy: ``http://`` or ``https://`` host and port, optionally with user:password."""
    if not value:
        return
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        parts, port = None, None
    well_formed = parts is not None and parts.scheme in ("http", "https") and parts.hostname and port
    if not well_formed or parts.path not in ("", "/"):
        raise ValidationError(
            _("Enter the proxy as http://host:port or https://host:port (user:password@ before the host if needed)."),
            code="invalid_proxy_url",
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
        "proxy_url",
    )
    CALLBACK_KINDS = {
        # kind in the URL -> (token field, AES key field)
        "app": ("app_token", "app_aes_key"),
        "contacts": ("contact_token", "contact_aes_key"),
        "customers": ("customer_token", "customer_aes_key"),
    }

    tenant = models.OneToOneField(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_config", verbose_name=_("tenant")
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
    contact_aes_key = EncryptedTextField(_("contact-change EncodingAESKey"), blank=True, validators=[validate_aes_key])

    class CustomerCredential(models.TextChoices):
        # Docs 92994, 96316: since 2023-12-01 new corps call the customer APIs only through a self-built app
        # listed under 客户联系 → 可调用接口的应用; older corps may still use the 客户联系 secret.
        SECRET = "secret", _("the customer-contact Secret (客户联系Secret; corps set up before 2023-12-01)")
        APP = "app", _("the app, authorised under 客户联系 → 可调用接口的应用")

    class TwoStepCredential(models.TextChoices):
        # Docs 99499, 99500, 99521: who exchanges the verification page's code.
        CONTACTS = "contacts", _("the contact-sync Secret (通讯录同步), with WeCom's verification page URL")
        APP = "app", _("the app, with the verification page set to the app's own OAuth link")

    customer_credential = models.CharField(
        _("customers are read with"),
        max_length=8,
        choices=CustomerCredential.choices,
        default=CustomerCredential.SECRET,
        help_text=_(
            "Corps set up since 2023-12-01 can no longer use the 客户联系 Secret: list this app under 客户联系 → "
            "可调用接口的应用 in the WeCom admin and choose the app."
        ),
    )
    customer_secret = EncryptedTextField(
        _("customer Secret (客户联系Secret)"),
        blank=True,
        help_text=_("Used only when customers are read with the customer-contact Secret."),
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
    members_may_send = models.BooleanField(
        _("members may send messages"),
        default=False,
        help_text=_(
            "Ordinary members of the tenant may send messages to chosen members through the API. Sending to "
            "everyone (@all), to departments or to tags always needs a tenant administrator."
        ),
    )
    two_step_verification = models.BooleanField(_("two-step verification"), default=False)
    private_info_scope = models.BooleanField(
        _("ask members for their private information at sign-in (snsapi_privateinfo)"),
        default=False,
        help_text=_(
            "Apps created after 2022-06-20 get no mobile, email or avatar from the contact API. With this on, "
            "sign-in inside WeCom asks each member's consent (手动授权) and fills them from it."
        ),
    )
    proxy_url = EncryptedTextField(
        _("outbound proxy for WeCom calls (固定出口IP)"),
        blank=True,
        validators=[validate_proxy_url],
        help_text=_(
            "Optional. Every call to WeCom for this tenant goes through this HTTPS proxy, so WeCom sees one "
            "fixed IP to add to the app's trusted IPs (企业可信IP). Example: http://10.0.0.5:3128"
        ),
    )
    two_step_credential = models.CharField(
        _("two-step verification through"),
        max_length=8,
        choices=TwoStepCredential.choices,
        default=TwoStepCredential.CONTACTS,
        help_text=_(
            "WeCom admin, two-step verification (二次验证): with the contact-sync Secret, set the verification page "
            "to this site's verification URL; with the app, set it to the app's OAuth link of that URL, and the "
            "members must be in the app's visible range."
        ),
    )
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
        return self.secret if self.customer_credential == self.CustomerCredential.APP else self.customer_secret


class Department(models.Model):
    """The tenant's mirror of one WeCom department (the sync and the contact callbacks fill it)."""

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_departments")
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

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_users")
    userid = models.CharField(_("WeCom userid"), max_length=64)
    name = models.CharField(_("name"), max_length=128, blank=True)
    departments = models.JSONField(_("departments"), default=list, blank=True)
    main_department = models.BigIntegerField(_("main department"), null=True, blank=True)
    is_leader_in_dept = models.JSONField(default=list, blank=True)
    position = models.CharField(_("position"), max_length=128, blank=True)
    # Personal data: encrypted at rest (fields.py; values stored in clear before 0006 stay readable and
    # 0006 encrypts them). Old corps' syncs fill them; for apps created after
    # 2022-06-20 only the member's consent at sign-in does (private_info_at).
    mobile = EncryptedTextField(_("mobile"), blank=True, allow_plaintext=True)
    email = EncryptedTextField(_("email"), blank=True, allow_plaintext=True)
    avatar = EncryptedTextField(_("avatar"), blank=True, allow_plaintext=True)
    gender = models.CharField(_("gender"), max_length=4, blank=True)
    private_info_at = models.DateTimeField(
        _("consented to share private information at"),
        null=True,
        blank=True,
        help_text=_("When the member last allowed the app to read their mobile, email and avatar at sign-in."),
    )
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
        indexes = [
            models.Index(fields=["tenant", "name"]),
            # WeCom matches userids ignoring case: ``userid__iexact`` (UPPER on PostgreSQL) and
            # services.directory.canonical_userids look members up through this index.
            models.Index(F("tenant"), Upper("userid"), name="wecom_user_userid_ci"),
        ]
        ordering = ["tenant", "userid"]

    def __str__(self):
        return f"{self.name} ({self.userid})"

    @property
    def is_active_in_wecom(self):
        return not self.removed and self.status == self.Status.ACTIVE


class Binding(models.Model):
    """A system user bound to a WeCom user, one-to-one per tenant (seed 001's bound users)."""

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_bindings")
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
        CANCEL_SYNC = "cancel_sync", _("Sync cancelled")

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_audit")
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

    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_external_contacts"
    )
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
        constraints = [models.UniqueConstraint(fields=["tenant", "external_userid"], name="uniq_external_contact")]

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
        # No worker had started it; a tenant admin cancelled it (issue 24).
        CANCELLED = "cancelled", _("Cancelled")

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_sync_runs")
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


DOMAIN_FILE_RE = re.compile(r"^WW_verify_[A-Za-z0-9]{8,64}\.txt$")
DOMAIN_FILE_MAX_BYTES = 1024


def validate_domain_file_name(value):
    if not DOMAIN_FILE_RE.match(value or ""):
        raise ValidationError(
            _("The file must be the one WeCom gives you, named like WW_verify_AbCd1234EfGh5678.txt."),
            code="invalid_domain_file_name",
        )


class DomainVerificationFile(models.Model):
    """The ``WW_verify_<code>.txt`` file WeCom asks to find at the root of an app's trusted domain
    (应用管理 → 网页授权及JS-SDK → 可信域名 → 申请校验域名), served byte for byte by ``urls_root``."""

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_domain_files")
    name = models.CharField(_("file name"), max_length=80, unique=True, validators=[validate_domain_file_name])
    content = models.BinaryField(_("content"), max_length=DOMAIN_FILE_MAX_BYTES)
    uploaded_at = models.DateTimeField(_("uploaded at"), auto_now=True)

    class Meta:
        verbose_name = _("domain verification file")
        verbose_name_plural = _("domain verification files")
        ordering = ["-uploaded_at"]

    def __str__(self):
        return self.name
