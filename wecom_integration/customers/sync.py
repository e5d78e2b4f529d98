"""The customer sync (seed 002): every external contact of every member, in one pass.

``externalcontact/batch/get_by_user`` (https://developer.work.weixin.qq.com/document/path/92994) is
asked for the customers of 100 members at a time, following its cursor, on a few threads within the
client's rate budget. As with the contact sync, everything is fetched first and then applied in one
transaction, so a failed fetch changes nothing; progress, history and errors are kept on the SyncRun.

The result lands in the same ExternalContact / FollowUser tables the customer-change callbacks keep
current (``services/customers.py``, whose field mapping and fingerprint are reused here): new and
changed rows are upserted in batches, unchanged ones are not written, and a relation or customer
WeCom no longer lists is marked removed (with ``removed_at``), never deleted. The members asked about
are the tenant's mirror (run the contact sync first): a relation of a member who left is ended too.

What was not listed was not necessarily ended: read with a self-built app's secret (corps since
2023-12-01, or no customer secret), ``batch/get_by_user`` silently leaves out the members outside the
app's visible range ("应用只能获取到可见范围内的成员", https://developer.work.weixin.qq.com/document/path/92994).
So before a stored relation is ended, its member is asked about with ``externalcontact/list``
(https://developer.work.weixin.qq.com/document/path/92113, one call per such member): 60011 means the
member is outside the range, and their relations are kept and marked not visible; only a relation the
member's own list no longer holds is ended.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from wecom_integration.client import WeComError, WeComRateLimited
from wecom_integration.client.api.externalcontact import BATCH_MAX_LIMIT, BATCH_MAX_USERS
from wecom_integration.customers.services import (
    CONTACT_FIELDS,
    GROUP_GONE,
    contact_fields_from_api,
    contact_fingerprint,
    follow_fields_from_api,
    link_members,
    upsert_group,
)
from wecom_integration.customers.tags import apply_corp_tags
from wecom_integration.directory.sync import (
    BATCH_SIZE,
    DEFAULT_WORKERS,
    NOT_VISIBLE,
    USER_NOT_FOUND,
    Progress,
    chunks,
    fail_run,
    requeue_run,
    run_pool,
    sync_client,
    sync_config,
)
from wecom_integration.models import CustomerGroup, ExternalContact, FollowUser, SyncRun, WeComUser

logger = logging.getLogger("wecom_integration.customer_sync")

FOLLOW_FIELDS = ("remark", "add_time", "state", "tag_ids")
# A cursor loop longer than this is a server bug, not a member with that many customers (WeCom caps a
# member at tens of thousands of customers, 100 per page).
MAX_PAGES_PER_CHUNK = 10_000


class Phase:
    """The values of ``SyncRun.phase`` for a customer sync."""

    QUEUED = "queued"
    CUSTOMERS = "customers"
    SAVING = "saving"
    DONE = "done"


def fetch_customers(client, userids: list[str], progress: Progress, workers: int = DEFAULT_WORKERS):
    """Every (customer, relation) of the members ``userids``: returns ``(contacts, follows)`` where
    ``contacts`` maps external_userid to ExternalContact fields and ``follows`` maps
    (external_userid, userid) to FollowUser fields."""
    groups = list(chunks(userids, BATCH_MAX_USERS))
    progress.start(Phase.CUSTOMERS, len(groups))
    contacts: dict[str, dict] = {}
    follows: dict[tuple[str, str], dict] = {}

    def fetch_chunk(chunk):
        # The pages of one chunk stay in one thread: each cursor belongs to its userid_list.
        rows, cursor, seen = [], None, set()
        for _ in range(MAX_PAGES_PER_CHUNK):
            page = client.externalcontact.batch_get_by_user(chunk, cursor, BATCH_MAX_LIMIT)
            rows.extend(page.get("external_contact_list") or ())
            cursor = page.get("next_cursor")
            if not cursor or cursor in seen:
                break
            seen.add(cursor)
        return rows

    def collect(_chunk, rows):
        for row in rows:
            contact = row.get("external_contact") or {}
            info = row.get("follow_info") or {}
            external_userid = str(contact.get("external_userid") or "")
            userid = str(info.get("userid") or "")
            if not external_userid or not userid:
                continue
            fields = contact_fields_from_api(contact)
            if external_userid in contacts:
                contacts[external_userid].update(fields)
            else:
                contacts[external_userid] = fields
            follows[(external_userid, userid[:64])] = follow_fields_from_api(info)
        progress.advance()

    run_pool(fetch_chunk, groups, workers, collect)
    return contacts, follows


@dataclass
class Unseen:
    """What :func:`probe_unlisted` learnt about stored relations the fetch did not list: members outside
    the app's visible range (``hidden``) and relations still on their member's list (``listed``)."""

    hidden: set[str] = field(default_factory=set)
    listed: set[tuple[str, str]] = field(default_factory=set)


def probe_unlisted(client, tenant, follows: dict, asked: list[str], workers: int = DEFAULT_WORKERS) -> Unseen:
    """Ask ``externalcontact/list`` about every asked member with a stored relation the fetch did not
    list, so that no relation is ended only because the app could not see it."""
    asked_set = set(asked)
    stored = FollowUser.objects.filter(contact__tenant=tenant, removed=False).values_list(
        "userid", "contact__external_userid"
    )
    members = sorted({userid for userid, external_userid in stored.iterator(chunk_size=5000)
                      if userid in asked_set and (external_userid, userid) not in follows})
    unseen = Unseen()

    def ask(userid):
        try:
            return client.externalcontact.list(userid)
        except WeComError as exc:
            if exc.errcode == NOT_VISIBLE:
                return None
            if exc.errcode == USER_NOT_FOUND:
                return []
            raise

    def collect(userid, listed):
        if listed is None:
            unseen.hidden.add(userid)
        else:
            unseen.listed.update((str(e), userid) for e in listed)

    run_pool(ask, members, workers, collect)
    return unseen


def apply_customers(tenant, contacts: dict, follows: dict, unseen: Unseen | None = None) -> dict:
    """Bring the tenant's customers up to date with a fetch (inside the caller's transaction); the
    relations ``unseen`` says were merely out of sight are kept. Returns counts including
    ``rows_written``."""
    now = timezone.now()
    unseen = unseen or Unseen()
    contact_counts = _apply_contacts(tenant, contacts, now)
    ids = dict(ExternalContact.objects.filter(tenant=tenant).values_list("external_userid", "pk"))
    follow_counts = _apply_follows(tenant, follows, ids, now, unseen)
    # A customer no relation points to any more is gone from the corp.
    orphaned_ids = list(
        ExternalContact.objects.filter(tenant=tenant, removed=False)
        .exclude(follow_users__removed=False)
        .values_list("pk", flat=True)
    )
    orphaned = 0
    for chunk in chunks(orphaned_ids):
        orphaned += ExternalContact.objects.filter(pk__in=chunk).update(removed=True, removed_at=now, updated_at=now)
    contact_counts["removed"] += orphaned
    written = contact_counts["created"] + contact_counts["updated"] + orphaned + follow_counts["written"]
    return {"customers": contact_counts, "follow_users": follow_counts, "rows_written": written}


def _apply_contacts(tenant, fetched: dict, now) -> dict:
    defaults = {name: ExternalContact._meta.get_field(name).get_default() for name in CONTACT_FIELDS}
    existing = {
        row[0]: row[1:]
        for row in ExternalContact.objects.filter(tenant=tenant)
        .values_list("external_userid", "fingerprint", "removed", *CONTACT_FIELDS)
        .iterator(chunk_size=5000)
    }
    batch, created, updated, unchanged = [], 0, 0, 0
    for external_userid, fields in fetched.items():
        old = existing.get(external_userid)
        # Keys WeCom left out keep their stored value, as the callbacks' upsert does.
        full = dict(defaults) if old is None else dict(zip(CONTACT_FIELDS, old[2:], strict=True))
        full.update(fields)
        digest = contact_fingerprint(full)
        if old is None:
            created += 1
        elif old[0] == digest and not old[1]:
            unchanged += 1
            continue
        else:
            updated += 1
        batch.append(
            ExternalContact(
                tenant=tenant, external_userid=external_userid, fingerprint=digest, removed=False, removed_at=None,
                **full,
            )
        )
    ExternalContact.objects.bulk_create(
        batch,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["tenant", "external_userid"],
        update_fields=[*CONTACT_FIELDS, "fingerprint", "removed", "removed_at", "updated_at"],
    )
    return {"created": created, "updated": updated, "unchanged": unchanged, "removed": 0}


def _apply_follows(tenant, fetched: dict, contact_ids: dict, now, unseen: Unseen) -> dict:
    existing = {}
    rows = FollowUser.objects.filter(contact__tenant=tenant).values_list(
        "contact__external_userid", "userid", "removed", "visible", *FOLLOW_FIELDS
    )
    for row in rows.iterator(chunk_size=5000):
        existing[(row[0], row[1])] = row[2:]
    batch, created, updated, unchanged = [], 0, 0, 0
    for key, fields in fetched.items():
        old = existing.pop(key, None)
        if old is None:
            full = {"remark": "", "add_time": 0, "state": "", "tag_ids": []}
            created += 1
        else:
            full = dict(zip(FOLLOW_FIELDS, old[2:], strict=True))
        changed = any(full[name] != value for name, value in fields.items())
        full.update(fields)
        if old is not None:
            if not changed and not old[0] and old[1]:
                unchanged += 1
                continue
            updated += 1
        batch.append(
            FollowUser(contact_id=contact_ids[key[0]], userid=key[1], removed=False, removed_at=None, visible=True,
                       **full)
        )
    FollowUser.objects.bulk_create(
        batch,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["contact", "userid"],
        update_fields=[*FOLLOW_FIELDS, "removed", "removed_at", "visible"],
    )
    # Not listed: out of the app's sight (kept, marked not visible), still on the member's own list
    # (kept as is), or really ended.
    hidden = [key for key, old in existing.items() if not old[0] and key[1] in unseen.hidden]
    ended = [key for key, old in existing.items()
             if not old[0] and key[1] not in unseen.hidden and key not in unseen.listed]
    newly_hidden = {}
    for external_userid, userid in hidden:
        if existing[(external_userid, userid)][1]:
            newly_hidden.setdefault(userid, []).append(contact_ids[external_userid])
    for userid, contact_pks in newly_hidden.items():
        for chunk in chunks(contact_pks):
            FollowUser.objects.filter(contact_id__in=chunk, userid=userid).update(visible=False)
    by_contact = {}
    for external_userid, userid in ended:
        by_contact.setdefault(contact_ids[external_userid], []).append(userid)
    # Ended relations are few next to the whole: one UPDATE per customer that lost some.
    for contact_id, userids in by_contact.items():
        FollowUser.objects.filter(contact_id=contact_id, userid__in=userids).update(removed=True, removed_at=now)
    return {
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
        "removed": len(ended),
        "not_visible": len(hidden),
        "written": created + updated + len(ended) + sum(len(v) for v in newly_hidden.values()),
    }


def fetch_groups(client) -> list[dict]:
    """Every customer group the credential sees, in full (``groupchat/list`` then ``groupchat/get``)."""
    groups = []
    for chat_id in list(client.externalcontact.iter_groupchats()):
        try:
            groups.append(client.externalcontact.groupchat_get(chat_id))
        except WeComError as exc:
            if exc.errcode not in GROUP_GONE:  # dismissed between the list and the read
                raise
    return groups


def apply_groups(tenant, groups: list[dict]) -> dict:
    """Write the fetched groups; a group of the mirror that WeCom no longer lists is marked dismissed."""
    now = timezone.now()
    for data in groups:
        upsert_group(tenant.pk, data, now)
    seen = {data["chat_id"] for data in groups}
    gone = CustomerGroup.objects.filter(tenant=tenant, dismissed=False).exclude(chat_id__in=seen)
    dismissed = gone.update(dismissed=True, dismissed_at=now)
    return {"fetched": len(groups), "dismissed": dismissed}


def execute_customer_run(run_id: int, *, client=None, workers: int = DEFAULT_WORKERS) -> SyncRun:
    """Run a pending customer sync to its end (the Celery task calls this); returns the run.

    Succeeded or failed is recorded on the run; WeComRateLimited is re-raised after the run is put back
    to pending, for the task to retry after ``retry_after`` seconds.
    """
    run = SyncRun.objects.select_related("tenant").get(pk=run_id)
    # Only a run still pending or running is started: a cancelled one (issue 24) or a finished one
    # (a redelivered task) is left as it is, in the same UPDATE that starts it (no race with a cancel).
    started = SyncRun.objects.filter(pk=run.pk, status__in=SyncRun.ACTIVE_STATUSES).update(
        status=SyncRun.Status.RUNNING, started_at=run.started_at or timezone.now(), finished_at=None
    )
    if not started:
        run.refresh_from_db()
        return run
    progress = Progress(run.pk)
    clock = time.monotonic()
    try:
        if client is None:
            client = sync_client(sync_config(run.tenant, "customers"), "customers")
        members = WeComUser.objects.filter(tenant=run.tenant, removed=False).order_by("userid")
        userids = list(members.values_list("userid", flat=True))
        contacts, follows = fetch_customers(client, userids, progress, workers)
        group_count = progress.total
        unseen = probe_unlisted(client, run.tenant, follows, userids, workers)
        groups = fetch_groups(client)
        corp_tags = client.externalcontact.get_corp_tag_list()
        fetch_seconds = time.monotonic() - clock
        progress.start(Phase.SAVING)
        with transaction.atomic():
            counts = apply_customers(run.tenant, contacts, follows, unseen)
            counts["groups"] = apply_groups(run.tenant, groups)
            counts["tags"] = apply_corp_tags(run.tenant.pk, corp_tags)
            counts["members_linked"] = link_members(run.tenant.pk)
            counts["outside_range"] = {"users": len(unseen.hidden), "userids": sorted(unseen.hidden)[:200]}
            counts.update(
                members=len(userids),
                fetched_customers=len(contacts),
                fetched_follow_users=len(follows),
                fetch_seconds=round(fetch_seconds, 3),
                seconds=round(time.monotonic() - clock, 3),
            )
            SyncRun.objects.filter(pk=run.pk).update(
                status=SyncRun.Status.SUCCEEDED,
                phase=Phase.DONE,
                done=group_count,
                total=group_count,
                counts=counts,
                finished_at=timezone.now(),
            )
    except WeComRateLimited as exc:
        logger.warning("Customer sync %s rate limited; retry in %ss", run.pk, exc.retry_after)
        requeue_run(run.pk, exc)
        raise
    except WeComError as exc:
        logger.warning("Customer sync %s failed: %s", run.pk, exc)
        fail_run(run.pk, exc, progress.phase)
    except Exception as exc:
        logger.exception("Customer sync %s failed", run.pk)
        fail_run(run.pk, exc, progress.phase)
    return SyncRun.objects.get(pk=run.pk)
