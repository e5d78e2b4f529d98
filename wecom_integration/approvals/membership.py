"""Joining requests decided through WeCom approvals (审核中 → a WeCom approval → active or rejected).

When a tenant has a :class:`MembershipApprovalSetting`, every membership that becomes pending (a system
user found by a sync outside the tenant, a manual bind, a WeCom sign-in of someone not yet a member)
submits an approval with the tenant's template, as the member (their WeCom userid is the applicant), to
the tenant's approvers. Its outcome decides the membership: approved → active; rejected, revoked or
deleted → rejected; each written to the audit log with the approver. A membership a tenant admin
decided in the Django admin first stays as the admin left it: the approval is then only marked settled.
Without the setting, nothing here runs and pending members wait for the admin as before.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.translation import gettext as _

from wecom_integration import tenancy
from wecom_integration.approvals import mirror, services
from wecom_integration.approvals.models import Approval, MembershipApprovalSetting
from wecom_integration.directory.bindings import audit
from wecom_integration.extension import get_adapter
from wecom_integration.models import AuditLog, Binding

logger = logging.getLogger(__name__)

APPROVED = {Approval.Status.APPROVED}
REFUSED = {Approval.Status.REJECTED, Approval.Status.REVOKED, Approval.Status.REVOKED_AFTER_APPROVAL,
           Approval.Status.DELETED}


def setting_for(tenant_id: int) -> MembershipApprovalSetting | None:
    return MembershipApprovalSetting.objects.filter(tenant_id=tenant_id, enabled=True).first()


def request_text(tenant, user, member_name="") -> str:
    """What the joining request says: the WeCom member's name (as the approver knows them), the account."""
    name = member_name or (user.get_full_name() if hasattr(user, "get_full_name") else "") or user.get_username()
    return _("%(name)s (account %(username)s) asks to join %(tenant)s.") % {
        "name": name, "username": user.get_username(), "tenant": tenant,
    }


def submit_for(tenant_id: int, user_id: int, source: str = "") -> Approval | None:
    """Submit the joining approval of ``user_id`` in ``tenant_id`` when the tenant decides joining
    requests through WeCom and the membership is still pending with no approval under way."""
    setting = setting_for(tenant_id)
    if setting is None:
        return None
    adapter = get_adapter()
    tenant = setting.tenant
    if adapter.membership_statuses(tenant, [user_id]).get(user_id) != tenancy.PENDING:
        return None
    open_ = Approval.objects.filter(
        tenant_id=tenant_id, purpose=Approval.Purpose.MEMBERSHIP, subject_user_id=user_id, settled=False
    )
    if open_.exists():
        return None
    bindings = Binding.objects.filter(tenant_id=tenant_id, user_id=user_id)
    creator, member_name = bindings.values_list("wecom_user__userid", "wecom_user__name").first() or ("", "")
    if not creator:
        logger.warning("membership approval of user %s in tenant %s not submitted: no WeCom binding", user_id,
                       tenant_id)
        return None
    user = get_user_model().objects.get(pk=user_id)
    config = tenant.wecom_config
    template = services.get_template(config, setting.template_id)
    submission = services.Submission(
        creator=creator,
        template_id=setting.template_id,
        contents=services.text_contents(template, request_text(tenant, user, member_name)),
        approvers=setting.approver_list,
        approver_attr=setting.approver_attr,
        notifyers=setting.notifyer_list,
    )
    approval = services.submit(config, submission, purpose=Approval.Purpose.MEMBERSHIP, subject_user=user)
    audit(tenant_id, AuditLog.Action.APPROVAL_SUBMITTED, target_user=user, wecom_userid=creator,
          sp_no=approval.sp_no, template=setting.template_id, source=source)
    return approval


def settle(applied: mirror.Applied) -> str | None:
    """Apply a membership approval's outcome once it is final; returns the membership state it set, or
    None. Runs inside the caller's transaction (the callback's savepoint, the reconciliation's)."""
    approval = applied.approval
    if approval.purpose != Approval.Purpose.MEMBERSHIP or approval.settled or approval.subject_user_id is None:
        return None
    status = approval.status
    if status not in APPROVED | REFUSED:
        return None
    with transaction.atomic():
        approval = Approval.objects.select_for_update().get(pk=approval.pk)
        if approval.settled:
            return None
        approval.settled = True
        approval.save(update_fields=["settled", "updated_at"])
        adapter = get_adapter()
        tenant = approval.tenant
        user_id = approval.subject_user_id
        current = adapter.membership_statuses(tenant, [user_id]).get(user_id)
        if current != tenancy.PENDING:
            # Decided in the Django admin (or ended) before WeCom's outcome came: left as it is.
            return None
        outcome = tenancy.ACTIVE if status in APPROVED else tenancy.REJECTED
        adapter.set_memberships(tenant, {user_id: outcome})
        action = AuditLog.Action.APPROVE if outcome == tenancy.ACTIVE else AuditLog.Action.REJECT
        approvers = mirror.decided_by(approval)
        audit(approval.tenant_id, action, target_user=approval.subject_user, wecom_userid=approval.applicant,
              via="wecom_approval", sp_no=approval.sp_no, approval_status=status, approvers=approvers)
        return outcome
