"""Bindings between a tenant's system users and its WeCom members, and the audit trail of every change.

Rules (seed 001, "Bound Enterprise WeChat Users"):

- a binding is one-to-one per tenant: a system user has at most one WeCom account in a tenant and a
  WeCom member at most one system user;
- removing a binding keeps the system user (they may belong to other tenants, or sign in otherwise);
- binding a user who is not an active member of the tenant makes them a member *pending approval*
  (审核中) until a tenant admin approves them;
- every bind, unbind, account creation, pending membership and approval is recorded in the AuditLog
  with who did it and when.

The contact sync's confirm step (``services/sync.py``) applies the same rules in bulk.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from tenants import services as tenant_services
from tenants.models import Membership

from ..models import AuditLog, Binding, WeComUser
from .directory import LEAVING_STATUSES


class BindingError(ValueError):
    """A bind or unbind that the rules forbid; ``message`` is for the admin, ``code`` for programs."""

    def __init__(self, message, code):
        super().__init__(message)
        self.message = message
        self.code = code


# Audit ---------------------------------------------------------------------------------------------


def audit_record(tenant_id, action, *, actor=None, target_user=None, wecom_userid="", **detail) -> AuditLog:
    """An unsaved AuditLog row, for callers that write many at once with ``bulk_create``."""
    return AuditLog(
        tenant_id=tenant_id,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_user=target_user,
        wecom_userid=wecom_userid or "",
        detail=detail,
    )


def audit(tenant_id, action, *, actor=None, target_user=None, wecom_userid="", **detail) -> AuditLog:
    """Record one action in the tenant's audit log and return the row."""
    record = audit_record(
        tenant_id, action, actor=actor, target_user=target_user, wecom_userid=wecom_userid, **detail
    )
    record.save()
    return record


def record_membership_decision(*, membership, status, actor=None, **kwargs):
    """``tenants.services.decision_hooks`` hook: an approval or rejection of a pending member goes into
    the WeCom audit log, next to the binding that made them pending."""
    action = {
        Membership.Status.ACTIVE: AuditLog.Action.APPROVE,
        Membership.Status.REJECTED: AuditLog.Action.REJECT,
    }.get(status)
    if action is None:
        return
    wecom_userid = (
        Binding.objects.filter(tenant_id=membership.tenant_id, user_id=membership.user_id)
        .values_list("wecom_user__userid", flat=True)
        .first()
    )
    audit(
        membership.tenant_id,
        action,
        actor=actor,
        target_user=membership.user,
        wecom_userid=wecom_userid or "",
        membership=membership.pk,
    )


def register_hooks():
    """Register :func:`record_membership_decision` once (safe to call again)."""
    if record_membership_decision not in tenant_services.decision_hooks:
        tenant_services.decision_hooks.append(record_membership_decision)


# Registered on import: every entry point that changes bindings (admin, API, tasks) imports this
# module, and the hook must be in place before the first approval is decided.
register_hooks()


# Memberships ---------------------------------------------------------------------------------------


def ensure_membership(user, tenant, *, actor=None, source="manual", **detail) -> str:
    """Make ``user`` a member of ``tenant`` or a member pending approval; returns the resulting status.

    An active or pending member stays as they are. A user with no membership, or a rejected or
    deactivated one, becomes pending (审核中): only a tenant admin lets them back in.
    """
    membership = Membership.objects.select_for_update(of=("self",)).filter(user=user, tenant=tenant).order_by().first()
    if membership is not None and membership.status in (Membership.Status.ACTIVE, Membership.Status.PENDING):
        return membership.status
    if membership is None:
        Membership.objects.create(user=user, tenant=tenant, status=Membership.Status.PENDING)
    else:
        membership.status = Membership.Status.PENDING
        membership.save(update_fields=["status", "updated_at"])
    audit(tenant.pk, AuditLog.Action.PENDING, actor=actor, target_user=user, source=source, **detail)
    return Membership.Status.PENDING


# Binding and unbinding -----------------------------------------------------------------------------


def check_bindable(tenant, user, wecom_user):
    """Raise BindingError unless ``user`` and ``wecom_user`` may be bound in ``tenant`` now."""
    if wecom_user.tenant_id != tenant.pk:
        raise BindingError(_("This WeCom member belongs to another tenant."), "other_tenant")
    if wecom_user.removed or wecom_user.status in LEAVING_STATUSES:
        raise BindingError(
            _("WeCom member %(userid)s has left or is disabled and cannot be bound.") % {"userid": wecom_user.userid},
            "wecom_user_left",
        )
    taken = (
        Binding.objects.filter(tenant=tenant, wecom_user=wecom_user)
        .exclude(user=user)
        .select_related("user")
        .first()
    )
    if taken is not None:
        raise BindingError(
            _("WeCom member %(userid)s is already bound to %(username)s.")
            % {"userid": wecom_user.userid, "username": taken.user.get_username()},
            "wecom_user_bound",
        )
    other = (
        Binding.objects.filter(tenant=tenant, user=user)
        .exclude(wecom_user=wecom_user)
        .select_related("wecom_user")
        .first()
    )
    if other is not None:
        raise BindingError(
            _("%(username)s is already bound to WeCom member %(userid)s.")
            % {"username": user.get_username(), "userid": other.wecom_user.userid},
            "user_bound",
        )


def bind(tenant, user, wecom_user, *, actor=None, source="manual", **detail) -> Binding:
    """Bind ``user`` to ``wecom_user`` in ``tenant`` (one-to-one) and record it.

    A user who is not an active member becomes a member pending approval. Binding the same pair again
    reactivates a binding that was deactivated when the member left. Raises BindingError.
    """
    with transaction.atomic():
        # Lock the WeCom member so that two admins binding it at once cannot both pass the checks.
        wecom_user = WeComUser.objects.select_for_update().get(pk=wecom_user.pk)
        check_bindable(tenant, user, wecom_user)
        binding = Binding.objects.filter(tenant=tenant, user=user, wecom_user=wecom_user).first()
        if binding is not None and binding.is_active:
            return binding
        membership = ensure_membership(user, tenant, actor=actor, source=source, wecom_userid=wecom_user.userid)
        try:
            with transaction.atomic():
                if binding is None:
                    binding = Binding.objects.create(tenant=tenant, user=user, wecom_user=wecom_user)
                else:
                    binding.is_active = True
                    binding.save(update_fields=["is_active", "updated_at"])
        except IntegrityError:
            # Someone bound one side in the meantime; the constraint is the last word.
            raise BindingError(_("One of the two is already bound."), "conflict") from None
        audit(
            tenant.pk,
            AuditLog.Action.BIND,
            actor=actor,
            target_user=user,
            wecom_userid=wecom_user.userid,
            source=source,
            membership=membership,
            **detail,
        )
    return binding


def unbind(binding, *, actor=None, source="manual") -> None:
    """Remove a binding and keep the system user; record who did it."""
    with transaction.atomic():
        deleted, _counts = Binding.objects.filter(pk=binding.pk).delete()
        if deleted:
            audit(
                binding.tenant_id,
                AuditLog.Action.UNBIND,
                actor=actor,
                target_user=binding.user,
                wecom_userid=binding.wecom_user.userid,
                source=source,
            )


def unbind_many(bindings, *, actor=None, source="manual") -> int:
    """Remove every binding of the queryset (users kept), one audit record each; returns how many."""
    with transaction.atomic():
        rows = list(bindings.select_related("wecom_user", "user").select_for_update(of=("self",)))
        if not rows:
            return 0
        Binding.objects.filter(pk__in=[row.pk for row in rows]).delete()
        AuditLog.objects.bulk_create(
            audit_record(
                row.tenant_id,
                AuditLog.Action.UNBIND,
                actor=actor,
                target_user=row.user,
                wecom_userid=row.wecom_user.userid,
                source=source,
            )
            for row in rows
        )
    return len(rows)


def binding_for(tenant, user):
    """The user's binding in ``tenant`` or None."""
    return Binding.objects.filter(tenant=tenant, user=user).select_related("wecom_user").first()


def tenant_users(tenant):
    """The system users of a tenant that may be bound: every member except rejected ones."""
    return get_user_model().objects.filter(
        memberships__tenant=tenant,
        memberships__status__in=(
            Membership.Status.ACTIVE,
            Membership.Status.PENDING,
            Membership.Status.INACTIVE,
        ),
    )
