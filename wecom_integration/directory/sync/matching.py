"""Matching by name (seed 001): normalised names, never a name held twice, proposals for review."""


from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils.translation import gettext as _

from wecom_integration import tenancy
from wecom_integration.directory.sync.state import BATCH_SIZE, BINDABLE_STATUSES
from wecom_integration.extension import get_adapter
from wecom_integration.models import (
    Binding,
    SyncProposal,
    SyncRun,
    WeComUser,
)

logger = logging.getLogger("wecom_integration.sync")

_SPACES = re.compile(r"\s+")
# Whitespace between two CJK characters carries no meaning (王 明 is 王明); between Latin words it does.
_CJK = r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
_CJK_GAP = re.compile(rf"(?<={_CJK}) (?={_CJK})")


def normalize_name(name: str) -> str:
    """A person's name as matching compares it: NFKC (full-width → half-width), trimmed, inner
    whitespace collapsed to one space and removed between CJK characters, case-folded."""
    text = unicodedata.normalize("NFKC", name or "")
    text = _SPACES.sub(" ", text).strip()
    text = _CJK_GAP.sub("", text)
    return text.casefold()


def user_name_keys(first_name: str, last_name: str) -> set[str]:
    """The names a system user may go by: ``get_full_name()`` ("first last"), and surname first with
    no space, as Chinese names are written (last_name 王 + first_name 明 → 王明)."""
    keys = {normalize_name(f"{first_name or ''} {last_name or ''}")}
    if first_name and last_name:
        keys.add(normalize_name(f"{last_name}{first_name}"))
    keys.discard("")
    return keys


@dataclass(frozen=True)
class Match:
    """The outcome of matching one WeCom member: ``user_id`` when matched, else the candidates."""

    user_id: int | None
    ambiguous: bool
    candidates: tuple[int, ...] = ()
    same_name_members: int = 1


def match_names(wecom_users: Iterable[tuple[int, str]], users: Iterable[tuple[int, str, str]]) -> dict:
    """Match WeCom members ``(id, name)`` with system users ``(id, first_name, last_name)`` by name.

    Returns ``{wecom_id: Match}``. A pair is matched only when the name is held by exactly one member
    and exactly one user, and that user matches no other member; anything else is ambiguous and left
    to the admin.
    """
    members_by_key = defaultdict(list)
    member_key = {}
    for wecom_id, name in wecom_users:
        key = normalize_name(name)
        member_key[wecom_id] = key
        if key:
            members_by_key[key].append(wecom_id)
    users_by_key = defaultdict(set)
    for user_id, first_name, last_name in users:
        for key in user_name_keys(first_name, last_name):
            if key in members_by_key:
                users_by_key[key].add(user_id)
    result = {}
    claimed = defaultdict(list)
    for wecom_id, key in member_key.items():
        candidates = tuple(sorted(users_by_key.get(key, ()))) if key else ()
        same_name = len(members_by_key.get(key, ())) if key else 1
        if len(candidates) == 1 and same_name == 1:
            result[wecom_id] = Match(candidates[0], False, candidates, same_name)
            claimed[candidates[0]].append(wecom_id)
        else:
            result[wecom_id] = Match(None, same_name > 1 or len(candidates) > 1, candidates, same_name)
    # One user matching two members under different spellings (王明 and 明王): neither is certain.
    for user_id, wecom_ids in claimed.items():
        if len(wecom_ids) > 1:
            for wecom_id in wecom_ids:
                result[wecom_id] = Match(None, True, (user_id,), 1)
    return result


def build_proposals(run: SyncRun) -> dict:
    """Replace the run's proposals: one per unbound, bindable WeCom member. Returns counts."""
    tenant = run.tenant
    User = get_user_model()
    bound = Binding.objects.filter(tenant=tenant)
    members = list(
        WeComUser.objects.filter(tenant=tenant, removed=False, visible=True, status__in=BINDABLE_STATUSES)
        .exclude(name="")
        .exclude(pk__in=bound.values("wecom_user_id"))
        .values_list("pk", "name")
    )
    accounts = list(
        User.objects.filter(pk__in=get_adapter().member_user_ids(tenant, tenancy.BINDABLE))
        .exclude(pk__in=bound.values("user_id"))
        # Staff and superuser accounts are bound only by a superuser or their holder (issue 16), never
        # proposed: a tenant admin accepting the proposals would otherwise have the confirm refused.
        .exclude(Q(is_staff=True) | Q(is_superuser=True))
        .values_list("pk", "first_name", "last_name")
        .distinct()
    )
    matches = match_names(members, accounts)
    usernames = {}
    wanted = {uid for match in matches.values() if match.ambiguous for uid in match.candidates[:5]}
    if wanted:
        usernames = dict(User.objects.filter(pk__in=wanted).values_list("pk", User.USERNAME_FIELD))
    counts = {"bind": 0, "create": 0, "skip": 0, "ambiguous": 0}
    SyncProposal.objects.filter(run=run).delete()
    batch = []
    for wecom_id, _name in members:
        match = matches[wecom_id]
        if match.user_id is not None:
            action, note = SyncProposal.Action.BIND, ""
        elif match.candidates:
            action = SyncProposal.Action.SKIP
            names = ", ".join(usernames.get(uid, str(uid)) for uid in match.candidates[:5])
            if len(match.candidates) == 1:
                note = _("Matches %(users)s, who also matches another WeCom member.") % {"users": names}
            else:
                note = _("Several accounts have this name: %(users)s") % {"users": names}
        else:
            action = SyncProposal.Action.CREATE
            note = (
                _("%(count)s WeCom members share this name.") % {"count": match.same_name_members}
                if match.same_name_members > 1
                else ""
            )
        counts[action] += 1
        counts["ambiguous"] += int(match.ambiguous)
        batch.append(
            SyncProposal(
                run=run,
                wecom_user_id=wecom_id,
                user_id=match.user_id,
                action=action,
                ambiguous=match.ambiguous,
                note=note[:255],
            )
        )
        if len(batch) >= BATCH_SIZE:
            SyncProposal.objects.bulk_create(batch, batch_size=BATCH_SIZE)
            batch.clear()
    SyncProposal.objects.bulk_create(batch, batch_size=BATCH_SIZE)
    return counts


def _supersede_reviews(run: SyncRun) -> None:
    """Older runs still waiting for review are replaced by this one: their proposals are stale."""
    older = SyncRun.objects.filter(tenant=run.tenant, kind=run.kind, status=SyncRun.Status.REVIEW).exclude(pk=run.pk)
    for old in older:
        SyncProposal.objects.filter(run=old).delete()
        old.status = SyncRun.Status.SUCCEEDED
        old.counts = {**old.counts, "superseded_by": run.pk}
        old.save(update_fields=["status", "counts"])
