"""Approvals' rows in the callback table and their receivers: ``sys_approval_change`` applied to the
mirror (and a membership approval's outcome to the membership), and pending memberships submitted as
WeCom approvals when the tenant asks for it."""

from django.db import transaction
from django.dispatch import receiver

from wecom_integration import queueing, signals
from wecom_integration.approvals import membership, mirror
from wecom_integration.callbacks import registry

SUBMIT_TASK = "wecom_integration.tasks.submit_membership_approvals"


@registry.handles("approval", signal=signals.approval_changed)
def on_approval_change(row, event) -> dict | None:
    if not event.sp_no or not event.info:
        return None
    applied = mirror.apply(row.tenant_id, mirror.from_callback(event.info), observed=event.create_time)
    if not applied.changed:
        return None
    membership.settle(applied)
    return {"approval": applied.approval, "previous_status": applied.previous_status, "source": "callback"}


@receiver(signals.membership_pending, dispatch_uid="wecom_approvals_membership_pending")
def on_membership_pending(sender, tenant_id, user_ids, source="", **kwargs):
    """Queue the WeCom approvals of memberships that became pending, when the tenant decides joining
    requests that way (checked here so tenants without the setting queue nothing)."""
    if not user_ids or membership.setting_for(tenant_id) is None:
        return
    ids = list(user_ids)
    transaction.on_commit(lambda: queueing.delay(SUBMIT_TASK, tenant_id, ids, source))
