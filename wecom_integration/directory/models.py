"""The directory's tables: the mirror of WeCom's departments and members, bindings to local accounts,
the audit log of who bound, approved or unbound whom, and the sync runs with their proposals."""


from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from wecom_integration.fields import EncryptedTextField
from wecom_integration.tenancy import ensure_setting

# The ForeignKeys below name WECOM_TENANT_MODEL; a host that does not set it gets the default.
ensure_setting()


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

    # No index of its own: the unique (tenant, user) serves lookups by tenant (issue 19: one index entry fewer
    # per binding a confirm writes).
    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_bindings", db_index=False
    )
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
        APPROVAL_SUBMITTED = "approval_submitted", _("Joining request sent as a WeCom approval")
        LINK_CUSTOMER = "link_customer", _("Customer linked to a member account")
        CHANGE_TAG = "change_tag", _("Contact tag changed in WeCom")
        CHANGE_CUSTOMER_TAG = "change_customer_tag", _("Customer tag changed in WeCom")

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
    # Set while the run waits for WeCom's hourly call budget (client/ratelimit.py) rather than be blocked.
    waiting_until = models.DateTimeField(_("waiting for the call budget until"), null=True, blank=True)
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


class ContactTag(models.Model):
    """A contact tag (通讯录标签) of the tenant's corp: a named set of members and departments that messages can
    be sent to (``totag``). Kept by the contact sync and by ``update_tag`` callbacks."""

    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_tags", verbose_name=_("tenant")
    )
    tagid = models.PositiveIntegerField(_("tag id"))
    name = models.CharField(_("tag name"), max_length=64, blank=True)
    # Department ids: a tag holds few departments, and a message to the tag reaches everyone under them.
    departments = models.JSONField(_("departments"), default=list, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("contact tag")
        verbose_name_plural = _("contact tags")
        ordering = ["tenant", "tagid"]
        constraints = [models.UniqueConstraint(fields=["tenant", "tagid"], name="uniq_contact_tag")]

    def __str__(self):
        return self.name or str(self.tagid)


class ContactTagMember(models.Model):
    """A member of a contact tag, by WeCom userid (a row each: a tag may hold 30,000 members)."""

    tag = models.ForeignKey(ContactTag, on_delete=models.CASCADE, related_name="members")
    userid = models.CharField(_("WeCom userid"), max_length=64)

    class Meta:
        verbose_name = _("tag member")
        verbose_name_plural = _("tag members")
        constraints = [models.UniqueConstraint(fields=["tag", "userid"], name="uniq_contact_tag_member")]

    def __str__(self):
        return self.userid
