"""Membership decisions, shared by the admin actions and the API."""

from django.db import transaction

from .models import Membership

# Hooks run after each decision (the WeCom app records them in its audit log).
decision_hooks = []


def decide_memberships(queryset, status, actor=None):
    """Approve or reject the pending memberships of ``queryset``; returns (changed, skipped)."""
    with transaction.atomic():
        selected = list(queryset.select_for_update(of=("self",)).select_related("user", "tenant"))
        pending = [m for m in selected if m.status == Membership.Status.PENDING]
        for membership in pending:
            membership.status = status
        Membership.objects.bulk_update(pending, ["status"])
        for membership in pending:
            for hook in decision_hooks:
                hook(membership=membership, status=status, actor=actor)
    return len(pending), len(selected) - len(pending)
