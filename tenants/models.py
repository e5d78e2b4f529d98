from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

# JeecgBoot's X-Tenant-Id defaults to 0: a default tenant with that id always exists (data migration).
DEFAULT_TENANT_ID = 0


class Tenant(models.Model):
    name = models.CharField(_("name"), max_length=100)
    # Seed 001's 门牌号: a short unique code; usernames created by the sync start with it.
    code = models.CharField(
        _("house number"),
        max_length=32,
        unique=True,
        help_text=_("A short unique code. Accounts created by the WeCom sync are named code + WeCom userid."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["id"]
        # A host names its own organisation model in WECOM_TENANT_MODEL (issue 24), as with AUTH_USER_MODEL.
        swappable = "WECOM_TENANT_MODEL"

    def __str__(self):
        return f"{self.name} ({self.code})"


class MembershipQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status=Membership.Status.ACTIVE)


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")
        MEMBER = "member", _("Member")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PENDING = "pending", _("Pending approval")
        REJECTED = "rejected", _("Rejected")
        INACTIVE = "inactive", _("Deactivated")

    # No index of their own: the unique (user, tenant) serves lookups by user, the (tenant, status) index lookups
    # by tenant, and a confirm that adds 100,000 memberships writes two index entries fewer for each (issue 19).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user"),
        db_index=False,
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("tenant"), db_index=False
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MEMBER)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="uniq_membership_user_tenant")]
        indexes = [models.Index(fields=["tenant", "status"])]

    def __str__(self):
        return f"{self.user} @ {self.tenant_id} ({self.role}, {self.status})"
