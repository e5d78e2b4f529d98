"""Confirming a run's reviewed proposals: bind, create accounts, make pending members, in one transaction
that changes nothing if any decision is invalid; and the review screen's edits of proposals."""


from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import IntegrityError, transaction
from django.db.models import ExpressionWrapper, F, TextField
from django.utils.translation import gettext as _

from wecom_integration import tenancy
from wecom_integration.bulk import insert_rows, one_of, plain_model
from wecom_integration.directory import bindings
from wecom_integration.directory.services import (
    LEAVING_STATUSES,
)
from wecom_integration.directory.sync.applying import chunks
from wecom_integration.directory.sync.state import BATCH_SIZE, ConfirmError, outside_range_help
from wecom_integration.extension import get_adapter
from wecom_integration.fields import decrypt_values
from wecom_integration.models import (
    AuditLog,
    Binding,
    SyncProposal,
    SyncRun,
    WeComUser,
)

logger = logging.getLogger("wecom_integration.sync")

@dataclass(frozen=True)
class Decision:
    """The admin's decision for one WeCom member: ``bind`` to ``username``, ``create`` an account
    (named ``username``, by default house number + userid) or ``skip``."""

    wecom_userid: str
    action: str
    username: str = ""


def default_username(tenant, wecom_user: WeComUser) -> str:
    """Seed 001: an account created by the sync is named the tenant's house number + the userid (the
    adapter's ``username_for``, so sign-up at sign-in names accounts the same way)."""
    return get_adapter().username_for(tenant, wecom_user)


def plan_from_proposals(run: SyncRun, *, accept_proposals: bool, create_unmatched: bool) -> list[Decision]:
    """Decisions taking the run's proposals as they stand (as reviewed in the admin)."""
    if not (accept_proposals or create_unmatched):
        return []
    User = get_user_model()
    decisions = []
    rows = run.proposals.values_list("wecom_user__userid", "action", f"user__{User.USERNAME_FIELD}")
    for userid, action, username in rows.iterator(chunk_size=5000):
        if action == SyncProposal.Action.BIND and accept_proposals and username:
            decisions.append(Decision(userid, "bind", username))
        elif action == SyncProposal.Action.CREATE and create_unmatched:
            decisions.append(Decision(userid, "create", username or ""))
    return decisions


def confirm_run(
    run: SyncRun,
    *,
    actor=None,
    decisions: Iterable[Decision] = (),
    accept_proposals: bool = False,
    create_unmatched: bool = False,
) -> dict:
    """Apply a reviewed contact sync in one transaction; returns counts.

    The proposals are taken first (``accept_proposals``: matched pairs; ``create_unmatched``: members
    proposed for a new account), then ``decisions`` override them member by member. Raises
    ConfirmError, with one entry per bad decision, and changes nothing, when any decision is invalid.

    Rows are written in bulk, a chunk of members at a time: accounts with ``bulk_create``, memberships
    through the adapter's ``set_memberships`` (one call per chunk), bindings and audit records with
    :func:`~wecom_integration.bulk.insert_rows`. No ``save()`` runs and no ``post_save`` is sent for
    them (as ``bulk_create`` sends none); a host that must react to the new bindings reads them, or the
    audit records, after the run is confirmed.
    """
    with transaction.atomic():
        run = SyncRun.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=run.pk)
        if run.kind != SyncRun.Kind.CONTACTS or run.status != SyncRun.Status.REVIEW:
            raise ConfirmError(
                [{"wecom_userid": "", "username": "", "code": "not_in_review",
                  "message": _("This sync is not waiting for review.")}],
                code="not_in_review",
            )
        plan = {}
        for decision in plan_from_proposals(run, accept_proposals=accept_proposals, create_unmatched=create_unmatched):
            plan[decision.wecom_userid] = decision
        for decision in decisions:
            plan[decision.wecom_userid] = decision
        try:
            with transaction.atomic():
                counts = _apply_plan(run, list(plan.values()), actor)
        except IntegrityError as exc:
            logger.info("Confirm of sync %s hit a constraint: %s", run.pk, exc)
            raise ConfirmError(
                [{"wecom_userid": "", "username": "", "code": "conflict",
                  "message": _("Another change bound one of these accounts meanwhile; review and confirm again.")}],
                code="conflict",
            ) from None
        run.status = SyncRun.Status.CONFIRMED
        run.counts = {**run.counts, "confirm": counts}
        run.save(update_fields=["status", "counts"])
    return counts


def _error(decision: Decision, code: str, message: str, username: str = "") -> dict:
    return {"wecom_userid": decision.wecom_userid, "username": username or decision.username, "code": code,
            "message": message}


@dataclass(frozen=True, slots=True)
class _Member:
    pk: int
    userid: str
    name: str
    email: str
    left: bool
    visible: bool = True


@dataclass(frozen=True, slots=True)
class _Account:
    pk: int
    username: str
    full_name: str
    privileged: bool = False


def _apply_plan(run: SyncRun, plan: list[Decision], actor) -> dict:
    """Check every decision, then write them all; ConfirmError (nothing written) if any is bad.

    Rows are read as small tuples and written in chunks, so confirming 100,000 members does not hold
    100,000 model instances of each kind at once.
    """
    tenant = run.tenant
    User = get_user_model()
    username_field = User.USERNAME_FIELD
    username_max = User._meta.get_field(username_field).max_length
    validators = _quick_validators(User._meta.get_field(username_field).validators)
    active = [d for d in plan if d.action != "skip"]
    counts = {"bound": 0, "created": 0, "pending": 0, "updated": 0, "skipped": len(plan) - len(active)}
    if not active:
        return counts
    members = {}
    # The e-mail as stored, opened a chunk at a time by decrypt_values: the field's own converter opens
    # one value at a time, which cost more than the rest of the confirm's work on a member (issue 19).
    stored_email = ExpressionWrapper(F("email"), output_field=TextField())
    rows = (
        WeComUser.objects.filter(tenant=tenant)
        .filter(one_of("userid", [d.wecom_userid for d in active]))
        .order_by()
        .values_list("pk", "userid", "name", stored_email, "status", "removed", "visible")
    )
    email_field = WeComUser._meta.get_field("email")
    iterator = rows.iterator(chunk_size=5000)
    while chunk := list(islice(iterator, 5000)):
        emails = decrypt_values([row[3] for row in chunk], allow_plaintext=email_field.allow_plaintext)
        for (pk, userid, name, _stored, status, removed, visible), email in zip(chunk, emails, strict=True):
            members[userid] = _Member(pk, userid, name, email, removed or status in LEAVING_STATUSES, visible)
    bound_members = set(
        Binding.objects.filter(tenant=tenant)
        .filter(one_of("wecom_user_id", [m.pk for m in members.values()]))
        .order_by()
        .values_list("wecom_user_id", flat=True)
    )
    errors = []
    wanted, unnamed = {}, []
    adapter = get_adapter()
    for decision in active:
        if decision.action not in ("bind", "create"):
            errors.append(_error(decision, "invalid_action", _("The action must be bind, create or skip.")))
            continue
        username = decision.username.strip() if decision.username else ""
        member = members.get(decision.wecom_userid)
        if decision.action == "create" and not username and member is not None:
            unnamed.append((member.userid, member.name))
        wanted[decision.wecom_userid] = username
    defaulted = adapter.usernames_for(tenant, unnamed)
    # Only the names the decisions give can be existing accounts: a default name already in use gets a
    # unique variant ("create" never binds an existing account), so those are free.
    accounts = {}
    rows = (
        User.objects.filter(one_of(username_field, {u for u in wanted.values() if u}))
        .order_by()
        .values_list("pk", username_field, "first_name", "last_name", "is_staff", "is_superuser")
    )
    for pk, username, first, last, staff, superuser in rows.iterator(chunk_size=5000):
        accounts[username] = _Account(pk, username, f"{first} {last}".strip(), staff or superuser)
    wanted.update(bindings.available_usernames(defaulted, reserved={u for u in wanted.values() if u}))
    bound_accounts = set(
        Binding.objects.filter(tenant=tenant)
        .filter(one_of("user_id", [a.pk for a in accounts.values()]))
        .order_by()
        .values_list("user_id", flat=True)
    )
    steps = []  # (member, existing account or None, username)
    taken = {}
    for decision in active:
        if decision.wecom_userid not in wanted:
            continue
        username = wanted[decision.wecom_userid]
        member = members.get(decision.wecom_userid)
        if member is None:
            errors.append(_error(decision, "unknown_wecom_user", _("No such WeCom member in this tenant.")))
            continue
        if member.left:
            errors.append(_error(decision, "wecom_user_left", _("This WeCom member has left or is disabled.")))
            continue
        if member.pk in bound_members:
            errors.append(_error(decision, "wecom_user_bound", _("This WeCom member is already bound.")))
            continue
        if decision.action == "create" and (not member.visible or not member.name.strip()):
            # An account is never named after a userid: the app must be able to read the member's name.
            errors.append(_error(decision, "wecom_user_not_visible", outside_range_help()))
            continue
        account = accounts.get(username) if username else None
        if decision.action == "bind" and account is None:
            code = "username_required" if not username else "unknown_user"
            message = _("Choose the account to bind.") if not username else _("No account has this username.")
            errors.append(_error(decision, code, message, username))
            continue
        if decision.action == "create" and account is not None:
            errors.append(_error(decision, "username_taken", _(
                "An account already has this username: choose another name, or bind that account."), username))
            continue
        if account is None:
            problem = _username_problem(username, username_max, validators)
            if problem:
                errors.append(_error(decision, "invalid_username", problem, username))
                continue
        elif account.privileged and not bindings.may_bind_privileged(account, actor):
            errors.append(_error(decision, "privileged_account", _(
                "This is a staff or superuser account: only a superuser may bind it to a WeCom member."), username))
            continue
        elif account.pk in bound_accounts:
            errors.append(
                _error(decision, "user_bound", _("This account is already bound to a WeCom member."), username)
            )
            continue
        if username in taken:
            errors.append(
                _error(
                    decision,
                    "duplicate_user",
                    _("The same account was chosen for %(userid)s too.") % {"userid": taken[username]},
                    username,
                )
            )
            continue
        taken[username] = decision.wecom_userid
        steps.append((member, account, username))
    if errors:
        raise ConfirmError(errors)
    for chunk in chunks(steps):
        _write_steps(tenant, run, chunk, actor, counts)
    return counts


def _quick_validators(validators) -> list:
    """``validators`` as (quick test or None, validator) pairs: the quick test says a value passes,
    exactly when the validator would not raise, without the validator's own call. A ``RegexValidator``
    (Django's username validators are) looks its lazily compiled pattern up on every call and a
    ``MaxLengthValidator`` builds its message's parameters before comparing: for 100,000 new accounts
    that was a tenth of the confirm's time (issue 19). A validator whose test fails is called, for its
    message; any other validator is called for every value."""
    quick = []
    for validator in validators:
        test = None
        if type(validator).__call__ is RegexValidator.__call__:
            search = validator.regex.search  # the compiled pattern's own method, looked up once
            if validator.inverse_match:
                def test(value, search=search):
                    return not search(str(value))
            else:
                def test(value, search=search):
                    return bool(search(str(value)))
        elif type(validator) is MaxLengthValidator and isinstance(validator.limit_value, int):
            def test(value, limit=validator.limit_value):
                return len(value) <= limit
        quick.append((test, validator))
    return quick


def _username_problem(username: str, max_length: int, validators) -> str:
    """Why ``username`` cannot name a new account, or ""; ``validators`` as _quick_validators gives them."""
    if max_length and len(username) > max_length:
        return _("The username is longer than %(max)s characters.") % {"max": max_length}
    for test, validator in validators:
        if test is not None and test(username):
            continue
        try:
            validator(username)
        except ValidationError as exc:
            return " ".join(str(message) for message in exc.messages)
    return ""


def _unusable_password() -> str:
    # What make_password(None) stores ("!" + 40 random characters), from one urandom read instead of
    # 40 secrets.choice calls: it matters when a confirm creates 100,000 accounts.
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)


def _create_accounts(User, rows) -> dict:
    """Create the accounts of ``rows`` ((username, first name, email, password) each): active, without
    a last name; returns {username: id}. As plain rows (insert_rows) when the host's user model lets
    them be written so, else through ``bulk_create``."""
    username_field = User.USERNAME_FIELD
    if not rows:
        return {}
    if plain_model(User):
        columns = (username_field, "first_name", "email", "password")
        returned = insert_rows(User, columns, rows, constants={"last_name": "", "is_active": True},
                               returning=(username_field, "pk"))
        if returned is not None:
            return dict(returned)
    else:
        users = [User(**{username_field: username}, first_name=first_name, last_name="", email=email,
                      password=password, is_active=True) for username, first_name, email, password in rows]
        User.objects.bulk_create(users, batch_size=BATCH_SIZE)
        if all(user.pk is not None for user in users):
            return {getattr(user, username_field): user.pk for user in users}
    # Backends that cannot return ids from a bulk insert: read them back.
    names = [row[0] for row in rows]
    return dict(User.objects.filter(one_of(username_field, names)).order_by().values_list(username_field, "pk"))


def _write_steps(tenant, run, steps, actor, counts) -> None:
    """Write one chunk of checked steps: accounts, memberships, bindings, audit records."""
    User = get_user_model()
    first_max = User._meta.get_field("first_name").max_length
    email_max = User._meta.get_field("email").max_length
    new_users = [
        (username, member.name[:first_max], (member.email or "")[:email_max], _unusable_password())
        for member, account, username in steps
        if account is None
    ]
    created = _create_accounts(User, new_users)
    existing_ids = [account.pk for _member, account, _username in steps if account is not None]
    adapter = get_adapter()
    memberships = adapter.membership_statuses(tenant, existing_ids)
    membership_changes, renamed, bound, audits = {}, [], [], []
    # Bindings and audit records as tuples, written by insert_rows: an instance per row, prepared field
    # by field by bulk_create, cost more than the database's work on them (issue 19).
    source = {"source": "sync", "run": run.pk}
    bind_details = {status: {**source, "membership": status} for status in (tenancy.ACTIVE, tenancy.PENDING)}

    for member, account, username in steps:
        if account is None:
            user_id = created[username]
            membership_changes[user_id] = status = tenancy.ACTIVE
            audits.append((AuditLog.Action.CREATE_ACCOUNT, user_id, member.userid, source))
            counts["created"] += 1
        else:
            user_id = account.pk
            status = memberships.get(user_id)
            newly_pending = status not in (tenancy.ACTIVE, tenancy.PENDING)
            if newly_pending:
                # No membership, or a rejected or ended one: pending until a tenant admin approves.
                membership_changes[user_id] = status = tenancy.PENDING
            if status == tenancy.PENDING:
                counts["pending"] += 1
                if newly_pending:
                    audits.append((AuditLog.Action.PENDING, user_id, member.userid, source))
            elif status == tenancy.ACTIVE and member.name and account.full_name != member.name:
                # An existing member takes their WeCom name (seed 001: "update it directly"); only
                # members of this tenant, as the account may belong to other tenants too.
                renamed.append(User(pk=user_id, first_name=member.name[:first_max], last_name=""))
        bound.append((user_id, member.pk))
        audits.append((AuditLog.Action.BIND, user_id, member.userid, bind_details[status]))
        counts["bound"] += 1
    adapter.set_memberships(tenant, membership_changes)
    bindings.announce_pending(
        tenant.pk, [uid for uid, state in membership_changes.items() if state == tenancy.PENDING], "sync"
    )
    User.objects.bulk_update(renamed, ["first_name", "last_name"], batch_size=BATCH_SIZE)
    counts["updated"] += len(renamed)
    insert_rows(Binding, ("user_id", "wecom_user_id"), bound, constants={"tenant_id": tenant.pk})
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    insert_rows(AuditLog, ("action", "target_user_id", "wecom_userid", "detail"), audits,
                constants={"tenant_id": tenant.pk, "actor_id": actor_id})


def update_proposals(run: SyncRun, rows: Iterable[dict]) -> None:
    """Save the admin's edits of the review screen: each row ``{"proposal", "action", "username",
    "wecom_userid"}``. A row whose WeCom member was changed moves its account to that member's
    proposal (the first member's proposal is then skipped). Raises ConfirmError; saves nothing then."""
    User = get_user_model()
    rows = list(rows)
    with transaction.atomic():
        proposals = {p.pk: p for p in run.proposals.filter(pk__in=[r["proposal"] for r in rows]).select_related(
            "wecom_user")}
        targets = {r.get("wecom_userid") for r in rows if r.get("wecom_userid")}
        by_member = {p.wecom_user.userid: p for p in run.proposals.filter(wecom_user__userid__in=targets)
                     .select_related("wecom_user")}
        by_member.update({p.wecom_user.userid: p for p in proposals.values()})
        accounts = User.objects.in_bulk([r["username"] for r in rows if r.get("username")],
                                        field_name=User.USERNAME_FIELD)
        errors, changed = [], {}
        for row in rows:
            proposal = proposals.get(row["proposal"])
            if proposal is None:
                continue
            decision = Decision(row.get("wecom_userid") or proposal.wecom_user.userid, row.get("action", "skip"),
                                row.get("username") or "")
            if decision.action not in SyncProposal.Action.values:
                errors.append(_error(decision, "invalid_action", _("The action must be bind, create or skip.")))
                continue
            user = accounts.get(decision.username) if decision.username else None
            if decision.username and user is None:
                errors.append(_error(decision, "unknown_user", _("No account has this username.")))
                continue
            target = by_member.get(decision.wecom_userid)
            if target is None:
                errors.append(_error(decision, "unknown_wecom_user",
                                     _("This WeCom member has no proposal in this sync (already bound?).")))
                continue
            if target.pk != proposal.pk:
                proposal.user, proposal.action = None, SyncProposal.Action.SKIP
                changed[proposal.pk] = proposal
            target.user = user
            target.action = decision.action
            if decision.action == SyncProposal.Action.BIND and user is None:
                target.action = SyncProposal.Action.SKIP
            changed[target.pk] = target
        if errors:
            raise ConfirmError(errors)
        SyncProposal.objects.bulk_update(list(changed.values()), ["user", "action"], batch_size=BATCH_SIZE)
