"""Bindings between a tenant's system users and its WeCom members, and the audit trail of every change.

Rules (seed 001, "Bound Enterprise WeChat Users"):

- a binding is one-to-one per tenant: a system user has at most one WeCom account in a tenant and a
  WeCom member at most one system user;
- removing a binding keeps the system user (they may belong to other tenants, or sign in otherwise);
- binding a user who is not an active member of the tenant makes them a member *pending approval*
  (审核中) until a tenant admin approves them;
- a staff or superuser account is bound only by a superuser or by its own holder, never by sign-up
  (issue 16: else a tenant admin binds a superuser to a WeCom member, approves it and signs in as it);
- an account made for a WeCom member (sign-up, the sync's "create") never takes over an existing one:
  a name already in use gets a unique variant (:func:`available_usernames`);
- every bind, unbind, account creation, pending membership and approval is recorded in the AuditLog
  with who did it and when.

The contact sync's confirm step (``services/sync.py``) applies the same rules in bulk.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from wecom_integration import signals, tenancy
from wecom_integration.bulk import one_of
from wecom_integration.directory.services import LEAVING_STATUSES
from wecom_integration.extension import get_adapter
from wecom_integration.models import AuditLog, Binding, WeComUser


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
    action = {tenancy.ACTIVE: AuditLog.Action.APPROVE, tenancy.REJECTED: AuditLog.Action.REJECT}.get(status)
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


# Memberships ---------------------------------------------------------------------------------------


def ensure_membership(user, tenant, *, actor=None, source="manual", **detail) -> str:
    """Make ``user`` a member of ``tenant`` or a member pending approval; returns the resulting status.

    An active or pending member stays as they are. A user with no membership, or a rejected or
    deactivated one, becomes pending (审核中): only a tenant admin lets them back in.
    """
    adapter = get_adapter()
    status = adapter.membership_statuses(tenant, [user.pk]).get(user.pk)
    if status in (tenancy.ACTIVE, tenancy.PENDING):
        return status
    adapter.set_memberships(tenant, {user.pk: tenancy.PENDING})
    audit(tenant.pk, AuditLog.Action.PENDING, actor=actor, target_user=user, source=source, **detail)
    announce_pending(tenant.pk, [user.pk], source)
    return tenancy.PENDING


def announce_pending(tenant_id, user_ids, source) -> None:
    """``signals.membership_pending`` for memberships that just became pending; its receivers run in the
    same transaction (the approvals room queues its work on commit)."""
    if user_ids:
        signals.membership_pending.send(sender=Binding, tenant_id=tenant_id, user_ids=list(user_ids), source=source)


# Binding and unbinding -----------------------------------------------------------------------------


#: The ``source`` of bindings made by sign-up at WeCom sign-in (the adapter's ``create_user``).
SOURCE_SIGN_IN = "sign-in"


def is_privileged(user) -> bool:
    """Staff and superuser accounts: what a WeCom sign-in must never reach unless a superuser (or the
    account's holder) bound it on purpose."""
    return bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))


def may_bind_privileged(user, actor, source="manual") -> bool:
    """Whether ``actor`` may bind the staff or superuser account ``user``: a superuser may, the holder
    may bind their own account, sign-up never does. ``actor=None`` is the host's own code."""
    if source == SOURCE_SIGN_IN:
        return False
    if actor is None:
        return True
    if not getattr(actor, "is_authenticated", False):
        return False
    return bool(actor.is_superuser or actor.pk == user.pk)


def check_bindable(tenant, user, wecom_user, *, actor=None, source="manual"):
    """Raise BindingError unless ``actor`` may bind ``user`` and ``wecom_user`` in ``tenant`` now."""
    if is_privileged(user) and not may_bind_privileged(user, actor, source):
        raise BindingError(
            _("%(username)s is a staff or superuser account: only a superuser may bind it to a WeCom member.")
            % {"username": user.get_username()},
            "privileged_account",
        )
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
    reactivates a binding that was deactivated when the member left. Raises BindingError (also for a
    staff or superuser account that ``actor`` may not bind, see :func:`may_bind_privileged`).
    """
    with transaction.atomic():
        # Lock the WeCom member so that two admins binding it at once cannot both pass the checks.
        wecom_user = WeComUser.objects.select_for_update().get(pk=wecom_user.pk)
        check_bindable(tenant, user, wecom_user, actor=actor, source=source)
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


def made_by_signup_for_an_existing_account(binding) -> bool:
    """Whether sign-up bound ``binding``'s account without having created it: what sign-up did before
    issue 16 (house number + userid naming an existing account, even a superuser). Such a binding was
    chosen by nobody, so it never lets a WeCom member sign in; a sync confirm or an admin's bind of the
    same pair (a later ``bind`` audit record) does. One query for the bindings the sync or an admin made."""
    last_bind = (
        AuditLog.objects.filter(
            tenant_id=binding.tenant_id,
            target_user_id=binding.user_id,
            wecom_userid=binding.wecom_user.userid,
            action=AuditLog.Action.BIND,
        )
        .order_by("-id")
        .values_list("detail", flat=True)
        .first()
    )
    if not last_bind or last_bind.get("source") != SOURCE_SIGN_IN:
        return False
    return not AuditLog.objects.filter(
        tenant_id=binding.tenant_id,
        target_user_id=binding.user_id,
        action=AuditLog.Action.CREATE_ACCOUNT,
        detail__source=SOURCE_SIGN_IN,
    ).exists()


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
    return get_user_model().objects.filter(pk__in=get_adapter().member_user_ids(tenant, tenancy.BINDABLE))


# Names of new accounts -----------------------------------------------------------------------------

#: Numbered variants tried before a random one: ``ops`` taken → ``ops-2`` … ``ops-9`` → ``ops-3f9a0c1b``.
NUMBERED_VARIANTS = 8


def _variant(base: str, suffix: str, max_length: int) -> str:
    return f"{base[: max(max_length - len(suffix) - 1, 1)]}-{suffix}"


def _existing_usernames(names) -> set:
    User = get_user_model()
    field = User.USERNAME_FIELD
    return set(User._default_manager.filter(one_of(field, set(names))).order_by().values_list(field, flat=True))


def available_usernames(wanted: dict, reserved=()) -> dict:
    """``{key: username}`` for new accounts, from ``{key: wanted name}``: the wanted name when no account
    has it, else its first free variant (``name-2`` … ``name-9``, then ``name-`` + 8 random hex digits),
    never a name in ``reserved`` nor one given to another key. So an account made for a WeCom member
    never takes over an existing one (issue 16: house number ``o`` + userid ``ps`` is the superuser
    ``ops``). Two queries for any number of names; a concurrent insert still fails on the unique
    constraint, which callers treat as a conflict."""
    User = get_user_model()
    max_length = User._meta.get_field(User.USERNAME_FIELD).max_length or 150
    wanted = {key: (name or "")[:max_length] for key, name in wanted.items()}
    taken = set(reserved) | _existing_usernames(wanted.values())
    result, clashes = {}, []
    for key, name in wanted.items():
        if name and name not in taken:
            result[key] = name
            taken.add(name)
        else:
            clashes.append(key)
    if not clashes:
        return result
    variants = {key: [_variant(wanted[key], str(n), max_length) for n in range(2, NUMBERED_VARIANTS + 2)]
                for key in clashes}
    taken |= _existing_usernames(name for names in variants.values() for name in names)
    for key in clashes:
        name = next((name for name in variants[key] if name not in taken), None)
        while name is None or name in taken:
            name = _variant(wanted[key], secrets.token_hex(4), max_length)
        result[key] = name
        taken.add(name)
    return result
