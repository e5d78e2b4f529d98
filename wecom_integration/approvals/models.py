"""The approvals' mirror: each WeCom approval (审批) of a tenant with every approver's decision, and the
tenant's choice of an approval template for joining requests."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from wecom_integration.tenancy import ensure_setting

# The ForeignKeys below name WECOM_TENANT_MODEL; a host that does not set it gets the default.
ensure_setting()


class Approval(models.Model):
    """One approval (SpNo) as WeCom last described it, by callback or by the reconciliation job."""

    class Status(models.IntegerChoices):
        # WeCom's sp_status values (doc 91816).
        # WeCom's own words for them (审批中, 已通过 …), not the membership's.
        PENDING = 1, pgettext_lazy("approval status", "In approval")
        APPROVED = 2, pgettext_lazy("approval status", "Approved")
        REJECTED = 3, pgettext_lazy("approval status", "Rejected")
        REVOKED = 4, pgettext_lazy("approval status", "Revoked")
        REVOKED_AFTER_APPROVAL = 6, pgettext_lazy("approval status", "Revoked after approval")
        DELETED = 7, pgettext_lazy("approval status", "Deleted")
        PAID = 10, pgettext_lazy("approval status", "Paid")

    class Purpose(models.TextChoices):
        OTHER = "", _("Other")
        MEMBERSHIP = "membership", _("Joining the tenant")

    tenant = models.ForeignKey(settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_approvals")
    sp_no = models.CharField(_("approval number"), max_length=64)
    sp_name = models.CharField(_("approval"), max_length=128, blank=True)
    template_id = models.CharField(_("template"), max_length=128, blank=True)
    applicant = models.CharField(_("applicant (WeCom userid)"), max_length=64, blank=True)
    applicant_party = models.CharField(_("applicant's department"), max_length=64, blank=True)
    status = models.PositiveSmallIntegerField(_("status"), choices=Status.choices, default=Status.PENDING)
    apply_time = models.DateTimeField(_("submitted at"), null=True, blank=True)
    contents = models.JSONField(_("contents"), default=list, blank=True)
    records = models.JSONField(_("approval process"), default=list, blank=True)
    notifyers = models.JSONField(_("notified"), default=list, blank=True)
    comments = models.JSONField(_("comments"), default=list, blank=True)
    # Which description this row holds, so a late or repeated one never replaces a newer one: the latest
    # of the approval's own times, then how final its status is, then when it was observed.
    version = models.JSONField(default=list, blank=True, editable=False)
    purpose = models.CharField(_("purpose"), max_length=16, choices=Purpose.choices, blank=True, default="")
    subject_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("account concerned"),
    )
    # True once the outcome of a membership approval was applied (or found already decided in the admin).
    settled = models.BooleanField(_("outcome applied"), default=False)
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("approval")
        verbose_name_plural = _("approvals")
        ordering = ["-apply_time", "-pk"]
        constraints = [models.UniqueConstraint(fields=["tenant", "sp_no"], name="uniq_approval_sp_no")]
        indexes = [
            models.Index(fields=["tenant", "status"]),
            models.Index(fields=["tenant", "template_id"]),
            models.Index(fields=["tenant", "applicant"]),
        ]

    def __str__(self):
        return f"{self.sp_name or self.template_id} {self.sp_no}"

    @property
    def final(self):
        return self.status != self.Status.PENDING


class MembershipApprovalSetting(models.Model):
    """A tenant's joining requests go through a WeCom approval: this template, to these approvers."""

    class ApproverAttr(models.IntegerChoices):
        ANY = 1, _("Any one approver decides (或签)")
        ALL = 2, _("Every approver must approve (会签)")

    tenant = models.OneToOneField(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_membership_approval"
    )
    enabled = models.BooleanField(_("decide joining requests through WeCom approvals"), default=True)
    template_id = models.CharField(_("approval template id"), max_length=128)
    approvers = models.CharField(
        _("approvers"), max_length=1024, help_text=_("WeCom userids of the approvers, separated by commas.")
    )
    approver_attr = models.PositiveSmallIntegerField(
        _("how approvers decide"), choices=ApproverAttr.choices, default=ApproverAttr.ANY
    )
    notifyers = models.CharField(
        _("notified"),
        max_length=1024,
        blank=True,
        help_text=_("WeCom userids told of the outcome, separated by commas."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("membership approval setting")
        verbose_name_plural = _("membership approval settings")

    def __str__(self):
        return f"{self.tenant} → {self.template_id}"

    @property
    def approver_list(self):
        return [item.strip() for item in self.approvers.split(",") if item.strip()]

    @property
    def notifyer_list(self):
        return [item.strip() for item in self.notifyers.split(",") if item.strip()]
