"""Approvals' Celery tasks (registered under ``wecom_integration.tasks``): submitting joining requests as
WeCom approvals, and the periodic reconciliation that settles approvals whose callback was lost."""

import logging

from celery import shared_task

from wecom_integration.approvals import membership, services
from wecom_integration.client import WeComError
from wecom_integration.models import WeComConfig

logger = logging.getLogger(__name__)


@shared_task(name="wecom_integration.tasks.submit_membership_approvals", bind=True, max_retries=5)
def submit_membership_approvals(self, tenant_id, user_ids, source=""):
    """Submit one WeCom approval per pending membership (skipping those decided or already submitted)."""
    submitted = 0
    for user_id in user_ids:
        try:
            if membership.submit_for(tenant_id, user_id, source) is not None:
                submitted += 1
        except services.ApprovalInputError as exc:
            # The template does not fit a joining request: nothing to retry; the admin decides by hand.
            logger.error("membership approval of user %s in tenant %s refused: %s", user_id, tenant_id, exc)
        except WeComError as exc:
            if getattr(exc, "retryable", False):
                raise self.retry(exc=exc, countdown=60) from exc
            logger.error("membership approval of user %s in tenant %s failed: %s", user_id, tenant_id, exc)
    return submitted


@shared_task(name="wecom_integration.tasks.reconcile_approvals")
def reconcile_approvals(tenant_id=None):
    """Reconcile the approvals' mirror of every tenant whose WeCom app is configured (or of one)."""
    configs = WeComConfig.objects.exclude(corp_id="").select_related("tenant")
    if tenant_id is not None:
        configs = configs.filter(tenant_id=tenant_id)
    totals = {}
    for config in configs:
        try:
            counts = services.reconcile(config, after_apply=membership.settle)
        except WeComError as exc:
            logger.warning("approvals of tenant %s not reconciled: %s", config.tenant_id, exc)
            continue
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals
