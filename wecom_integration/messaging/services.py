"""Sending app messages to a tenant's WeCom members, departments and tags, with a log of each.

    from wecom_integration.messaging.services import Message, send, send_async

    log = send(tenant, Message.text("周报已生成"), usernames=["alice", "bob"], sender=request.user)
    log.status, log.msgids, log.invalid_users

A send is two steps, ``prepare`` (validate, resolve local usernames through their bindings, write the
MessageLog as *queued*) and ``deliver`` (upload media, call ``message/send`` once per batch, record
WeCom's answers). ``send`` does both in the caller's process; ``send_async`` prepares and hands
delivery to the Celery task ``wecom_integration.tasks.send_message``.

Recipients are split into WeCom's batches (1,000 users, 100 departments, 100 tags per call) and the
three lists share calls, so 2,500 users and 150 departments take 3 calls, not 5. The log remembers how
many batches are done, so a delivery interrupted by WeCom's frequency limit resumes where it stopped
instead of sending the first batches twice.

https://developer.work.weixin.qq.com/document/path/90236
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from wecom_integration import observability, queueing, tenancy
from wecom_integration.client import WeComConfigError, WeComError, WeComRateLimited, client_for
from wecom_integration.client.api.message import MAX_PARTIES, MAX_TAGS, MAX_USERS
from wecom_integration.client.base import CONFIG_ERRCODES
from wecom_integration.directory.services import canonical_userids
from wecom_integration.directory.tags import unknown_tags
from wecom_integration.extension import get_adapter
from wecom_integration.messaging.composing import (
    ALL,
    ALL_RECIPIENTS_INVALID,
    LOOKUP_CHUNK,
    MEDIA_MAX_BYTES,
    MEDIA_REUPLOAD_AFTER,
    MESSAGE_OPTION_KEYS,
    RATE_LIMIT_ERRCODES,
    USERID_MAX_CHARS,
    Attachment,
    Message,
    NotConfigured,
    RecipientError,
    summarize,
)
from wecom_integration.models import Binding, InboxMessage, MessageLog, WeComConfig, WeComUser

logger = logging.getLogger(__name__)

__all__ = [
    "ALL",
    "Attachment",
    "Message",
    "NotConfigured",
    "Outgoing",
    "RecipientError",
    "Resolution",
    "close",
    "deliver",
    "describe_failure",
    "failure_code",
    "is_success",
    "plan_batches",
    "prepare",
    "reply_to_inbox",
    "resolve_usernames",
    "send",
    "send_async",
    "summarize",
    "usernames_for",
]

@dataclass
class Resolution:
    """Local usernames resolved through the tenant's active bindings."""

    #: WeCom userid -> local username, for every username that is bound.
    by_userid: dict[str, str] = field(default_factory=dict)
    #: Usernames that are not active members of the tenant.
    unknown: list[str] = field(default_factory=list)
    #: Active members with no active binding to a WeCom member.
    unbound: list[str] = field(default_factory=list)


@dataclass
class Outgoing:
    """A prepared message: its log (status *queued*) and how the usernames resolved."""

    log: MessageLog
    message: Message
    resolution: Resolution


def _dedupe(values):
    return list(dict.fromkeys(str(value).strip() for value in values if str(value).strip()))


def _chunks(values, size):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def resolve_usernames(tenant, usernames):
    """Map local usernames to WeCom userids through the tenant's active bindings.

    A username that is not an active member of ``tenant`` is *unknown*; a member without an active
    binding (never bound, unbound, or the WeCom member quit or was removed) is *unbound*.
    """
    User = get_user_model()
    username_field = User.USERNAME_FIELD
    usernames = _dedupe(usernames)
    members = {}
    bound = {}
    for chunk in _chunks(usernames, LOOKUP_CHUNK):
        rows = (
            User.objects.filter(pk__in=get_adapter().member_user_ids(tenant, (tenancy.ACTIVE,)))
            .filter(**{f"{username_field}__in": chunk})
            .values_list(username_field, "pk")
        )
        members.update(rows)
    user_ids = list(members.values())
    for chunk in _chunks(user_ids, LOOKUP_CHUNK):
        rows = Binding.objects.filter(
            tenant=tenant, user_id__in=chunk, is_active=True, wecom_user__removed=False
        ).values_list("user_id", "wecom_user__userid")
        bound.update(rows)
    resolution = Resolution()
    for username in usernames:
        user_id = members.get(username)
        if user_id is None:
            resolution.unknown.append(username)
        elif user_id in bound:
            resolution.by_userid[bound[user_id]] = username
        else:
            resolution.unbound.append(username)
    return resolution


def usernames_for(tenant, userids, known=None):
    """The local username of each WeCom userid (through active bindings), the userid itself when it
    has none; ``known`` (userid -> username) is consulted first. Userids match ignoring case: WeCom
    reports invalid recipients lower-cased (doc 90236)."""
    known = {userid.lower(): name for userid, name in (known or {}).items()}
    missing = [userid for userid in userids if userid.lower() not in known]
    stored = canonical_userids(tenant.pk, missing)
    User = get_user_model()
    for chunk in _chunks(list(set(stored.values())), LOOKUP_CHUNK):
        rows = Binding.objects.filter(tenant=tenant, wecom_user__userid__in=chunk).values_list(
            "wecom_user__userid", f"user__{User.USERNAME_FIELD}"
        )
        known.update((userid.lower(), name) for userid, name in rows)
    return [known.get(userid.lower(), userid) for userid in userids]


def plan_batches(users=(), parties=(), tags=(), to_all=False):
    """The recipient part of each ``message/send`` call: users, departments and tags share calls.

    The number of calls is the largest of ceil(users / 1000), ceil(departments / 100) and
    ceil(tags / 100); call *i* carries the *i*-th slice of each list. ``to_all`` is one call to "@all".

    https://developer.work.weixin.qq.com/document/path/90236
    """
    if to_all:
        return [{"touser": ALL}]
    users, parties, tags = list(users), list(parties), list(tags)
    count = max(
        math.ceil(len(users) / MAX_USERS), math.ceil(len(parties) / MAX_PARTIES), math.ceil(len(tags) / MAX_TAGS)
    )
    batches = []
    for index in range(count):
        batch = {}
        for key, values, size in (
            ("touser", users, MAX_USERS),
            ("toparty", parties, MAX_PARTIES),
            ("totag", tags, MAX_TAGS),
        ):
            part = values[index * size : (index + 1) * size]
            if part:
                batch[key] = "|".join(part)
        batches.append(batch)
    return batches


def _split(joined):
    return [value for value in (joined or "").split("|") if value]


def _validate_ids(values, label, numeric):
    for value in values:
        if numeric and not value.isdigit():
            raise ValidationError(
                _("%(label)s must be numeric ids, not %(value)s."),
                code="invalid_id",
                params={"label": label, "value": value},
            )
        if not numeric and ("|" in value or len(value) > USERID_MAX_CHARS or value == ALL):
            raise ValidationError(_("%(value)s is not a WeCom userid."), code="invalid_userid", params={"value": value})


def _config(tenant):
    config = WeComConfig.objects.filter(tenant=tenant).first()
    if config is None:
        raise NotConfigured()
    if not config.enabled:
        raise NotConfigured(gettext("The WeCom integration of this tenant is turned off."))
    return config


def prepare(
    tenant,
    message,
    *,
    users=(),
    parties=(),
    tags=(),
    usernames=(),
    to_all=False,
    sender=None,
    source="api",
):
    """Check a message and its recipients and log it as *queued*; nothing is sent yet.

    ``users`` are WeCom userids, ``parties`` department ids, ``tags`` tag ids, ``usernames`` local
    usernames of the tenant's members (sent to their bound WeCom member); ``to_all`` sends to every
    member in the app's visible range. Raises ``NotConfigured`` when the tenant has no enabled WeCom
    configuration, ``ValidationError`` for an unknown username or when nobody is left to send to.
    """
    _config(tenant)
    resolution = resolve_usernames(tenant, usernames) if usernames else Resolution()
    if resolution.unknown:
        raise RecipientError(
            _("Unknown receivers (not members of this tenant): %(names)s."),
            "unknown_receivers",
            {"names": ", ".join(resolution.unknown)},
            resolution,
        )
    # As the mirror spells them (WeCom matches userids ignoring case), so the log and its reports agree.
    stored = canonical_userids(tenant.pk, users)
    userids = _dedupe([*(stored.get(u, u) for u in users), *resolution.by_userid])
    parties, tags = _dedupe(parties), _dedupe(tags)
    _validate_ids(userids, gettext("Users"), numeric=False)
    _validate_ids(parties, gettext("Departments"), numeric=True)
    _validate_ids(tags, gettext("Tags"), numeric=True)
    unknown = unknown_tags(tenant.pk, tags) if tags else []
    if unknown:
        # WeCom would answer them in invalidtag after the send; the mirror says so before anything goes out.
        raise RecipientError(
            _("Unknown tags (not among the tenant's WeCom contact tags; sync the contacts if one is new): %(ids)s."),
            "unknown_tags",
            {"ids": ", ".join(unknown)},
            resolution,
        )
    if not to_all and not (userids or parties or tags):
        if resolution.unbound:
            raise RecipientError(
                _("None of the receivers is bound to a WeCom member: %(names)s."),
                "unbound_receivers",
                {"names": ", ".join(resolution.unbound)},
                resolution,
            )
        raise RecipientError(_("Choose at least one receiver."), "no_receivers", None, resolution)
    if message.task_id and MessageLog.objects.filter(tenant=tenant, task_id=message.task_id).exists():
        # WeCom refuses a task_id the app has used (42014): say so before anything is sent.
        raise ValidationError(
            _("The card's task_id %(task_id)s was used before; each card needs its own."),
            code="task_id_used",
            params={"task_id": message.task_id},
        )
    log = MessageLog.objects.create(
        tenant=tenant,
        task_id=message.task_id,
        sender=sender if sender is not None and sender.is_authenticated else None,
        source=source,
        msgtype=message.msgtype,
        content=message.log_content(),
        touser=ALL if to_all else "|".join(userids),
        toparty="" if to_all else "|".join(parties),
        totag="" if to_all else "|".join(tags),
    )
    return Outgoing(log, message, resolution)


def _request_body(log, agent_id):
    content = log.content
    body = {"msgtype": log.msgtype, log.msgtype: content[log.msgtype], "agentid": agent_id}
    for key in MESSAGE_OPTION_KEYS:
        if key in content:
            body[key] = content[key]
    return body


def _finish(log, stopped):
    """Final status: sent, partly delivered or failed, from what the batches recorded."""
    log.out_of_range_users = out_of_range(log.tenant_id, log.invalid_users)
    invalid = log.invalid_users or log.invalid_parties or log.invalid_tags
    if log.msgids:
        log.status = MessageLog.Status.PARTIAL if (invalid or stopped) else MessageLog.Status.SENT
    else:
        log.status = MessageLog.Status.FAILED
    _record(log)


def _record(log):
    observability.record_message_sent(log.msgtype, log.status)
    observability.log_event(
        logger, "message.sent", tenant=log.tenant_id, message=log.pk, msgtype=log.msgtype,
        outcome=log.status, calls=log.calls, errcode=log.errcode,
    )


def out_of_range(tenant_id, invalid_userids):
    """Of the recipients WeCom reported invalid, those the tenant's mirror knows as active members: WeCom
    has them, so the app cannot see them (outside its visible range, 可见范围). As the mirror spells them.
    https://developer.work.weixin.qq.com/document/path/90236"""
    if not invalid_userids:
        return []
    stored = canonical_userids(tenant_id, invalid_userids)
    active = set()
    for chunk in _chunks(list(set(stored.values())), LOOKUP_CHUNK):
        active.update(
            WeComUser.objects.filter(
                tenant_id=tenant_id, userid__in=chunk, removed=False, status=WeComUser.Status.ACTIVE
            ).values_list("userid", flat=True)
        )
    return [stored[u] for u in dict.fromkeys(invalid_userids) if stored[u] in active]


def close(log):
    """Give up on a queued message: close its log as it stands (partial when some batches were sent,
    failed otherwise). Used when WeCom keeps rate-limiting past the task's retries."""
    if log.status == MessageLog.Status.QUEUED:
        _finish(log, stopped=True)
        log.save(update_fields=["status", "out_of_range_users"])
    return log


def is_success(log):
    """True when WeCom accepted the message and reported no error: sent, or partly delivered because
    some recipients were invalid (not because a call failed)."""
    if log.status == MessageLog.Status.SENT:
        return True
    return log.status == MessageLog.Status.PARTIAL and log.errcode in (0, ALL_RECIPIENTS_INVALID)


def is_rate_limited(log):
    """True when the delivery stopped on WeCom's frequency limit or our own call budget."""
    return log.errcode in RATE_LIMIT_ERRCODES or (log.errcode == 0 and "rate budget" in log.errmsg)


def failure_code(log):
    """A stable code for why a delivery failed, for API clients: ``wecom_configuration`` (wrong
    secret, untrusted IP …), ``rate_limited``, ``no_valid_receivers``, ``wecom_refused`` (another
    errcode) or ``wecom_unreachable`` (no usable answer from WeCom)."""
    if log.errcode in CONFIG_ERRCODES:
        return "wecom_configuration"
    if is_rate_limited(log):
        return "rate_limited"
    if log.errcode == ALL_RECIPIENTS_INVALID:
        return "no_valid_receivers"
    if log.errcode:
        return "wecom_refused"
    return "wecom_unreachable"


def describe_failure(log, *, detail=True):
    """What went wrong with a delivery, for a person: the admin's fix for configuration errors
    (wrong secret, untrusted IP …), otherwise WeCom's errcode and errmsg. Without ``detail`` (answers to
    API clients) neither WeCom's errmsg nor the text of a network failure is included: they can name
    hosts and URLs, and the server's log has them."""
    if log.errcode in CONFIG_ERRCODES:
        return WeComConfigError(log.errcode, log.errmsg, "message/send", "app").admin_message
    if is_rate_limited(log):
        return gettext(
            "WeCom's frequency limit was reached; try again in a minute. If it persists, the app may have used "
            "its daily quota (the company's account limit × 200 person-times a day): the rest goes out tomorrow."
        )
    if log.errcode == ALL_RECIPIENTS_INVALID:
        return gettext(
            "WeCom found none of the receivers (errcode 81013): they may have left, "
            "or be outside the app's visible range."
        )
    if log.errcode and not detail:
        return gettext("WeCom refused the message (errcode %(errcode)s).") % {"errcode": log.errcode}
    if log.errcode:
        return gettext("WeCom refused the message (errcode %(errcode)s): %(errmsg)s") % {
            "errcode": log.errcode,
            "errmsg": log.errmsg,
        }
    if not detail:
        return gettext("WeCom could not be reached, so the message was not sent. Try again later.")
    return log.errmsg or gettext("The message could not be sent.")


def _record_error(log, exc):
    log.errcode = exc.errcode if exc.errcode is not None else 0
    log.errmsg = (exc.errmsg or str(exc))[:255]


def deliver(log, attachment=None, *, raise_rate_limited=False):
    """Send a queued message: upload its file if it has one, then one ``message/send`` per batch.

    Progress is saved after every call. WeCom's frequency limit (45009, 45033) or our own call budget
    stops the delivery: with ``raise_rate_limited`` the log stays *queued* and ``WeComRateLimited``
    propagates (the Celery task retries after ``retry_after`` and resumes at the next batch); without,
    the log is closed as it stands. Other WeCom errors stop the delivery too, since the next batch would
    meet the same error; a call whose recipients were all invalid (81013) does not. Returns the log.

    https://developer.work.weixin.qq.com/document/path/90236
    """
    if not isinstance(log, MessageLog):
        log = MessageLog.objects.select_related("tenant").get(pk=log)
    if log.status != MessageLog.Status.QUEUED:
        # Already finished, e.g. a Celery message delivered twice: never send again.
        return log
    try:
        config = _config(log.tenant)
        client = client_for(config, "app")
    except NotConfigured as exc:
        log.status, log.errmsg = MessageLog.Status.FAILED, exc.message[:255]
        log.save(update_fields=["status", "errmsg"])
        _record(log)
        return log
    except WeComError as exc:
        _record_error(log, exc)
        log.status = MessageLog.Status.FAILED
        log.save(update_fields=["status", "errcode", "errmsg"])
        _record(log)
        return log

    stopped = False
    try:
        if log.msgtype in MEDIA_MAX_BYTES and _needs_upload(log, attachment):
            _upload(client, log, attachment)
        batches = plan_batches(_split(log.touser), _split(log.toparty), _split(log.totag), log.touser == ALL)
        payload = _request_body(log, config.agent_id)
        for index in range(log.calls, len(batches)):
            batch = batches[index]
            try:
                answer = client.message.send({**payload, **batch})
            except WeComRateLimited:
                raise
            except WeComError as exc:
                _record_error(log, exc)
                if exc.errcode != ALL_RECIPIENTS_INVALID:
                    stopped = True
                    break
                answer = {
                    "invaliduser": batch.get("touser"),
                    "invalidparty": batch.get("toparty"),
                    "invalidtag": batch.get("totag"),
                }
            else:
                log.msgids = [*log.msgids, answer.get("msgid", "")]
            # Members without a WeCom licence (unlicenseduser) are not reached either: report them too.
            unreached = [*_split(answer.get("invaliduser")), *_split(answer.get("unlicenseduser"))]
            log.invalid_users = [*log.invalid_users, *unreached]
            log.invalid_parties = [*log.invalid_parties, *_split(answer.get("invalidparty"))]
            log.invalid_tags = [*log.invalid_tags, *_split(answer.get("invalidtag"))]
            log.calls = index + 1
            log.save(
                update_fields=[
                    "msgids",
                    "invalid_users",
                    "invalid_parties",
                    "invalid_tags",
                    "calls",
                    "errcode",
                    "errmsg",
                ]
            )
    except WeComRateLimited as exc:
        _record_error(log, exc)
        if raise_rate_limited:
            log.save(update_fields=["errcode", "errmsg", "content"])
            raise
        stopped = True
    except (WeComError, ValidationError) as exc:
        # Upload failures land here (message/send errors are handled per batch above).
        if isinstance(exc, ValidationError):
            log.errmsg = "; ".join(exc.messages)[:255]
        else:
            _record_error(log, exc)
        stopped = True
    _finish(log, stopped)
    log.save()
    return log


def _needs_upload(log, attachment):
    """No media_id yet, or one we uploaded so long ago that WeCom has dropped it (and the file is at hand:
    a media_id the caller gave is theirs to keep alive)."""
    if not log.content[log.msgtype].get("media_id"):
        return True
    uploaded_at = log.content.get("media_uploaded_at")
    return attachment is not None and uploaded_at is not None and time.time() - uploaded_at >= MEDIA_REUPLOAD_AFTER


def _upload(client, log, attachment):
    """Upload the message's file (kept 3 days by WeCom) and remember its media_id in the log, so a
    resumed delivery does not upload it again. https://developer.work.weixin.qq.com/document/path/90253"""
    if attachment is None:
        raise ValidationError(_("The file to send is missing."), code="no_media")
    if isinstance(attachment, dict):
        attachment = Attachment.from_json(attachment)
    answer = client.media.upload(log.msgtype, attachment.filename, attachment.content)
    content = dict(log.content)
    content[log.msgtype] = {**content[log.msgtype], "media_id": answer["media_id"]}
    content["media_uploaded_at"] = int(time.time())
    log.content = content
    log.save(update_fields=["content"])


def send(
    tenant,
    message,
    users=(),
    parties=(),
    tags=(),
    usernames=(),
    *,
    to_all=False,
    sender=None,
    source="api",
):
    """Send ``message`` now, in this process, and return its MessageLog (sent, partial or failed).

    See ``prepare`` for the recipients and the errors raised before anything is sent, ``deliver`` for
    how WeCom's answers are recorded. https://developer.work.weixin.qq.com/document/path/90236
    """
    outgoing = prepare(
        tenant,
        message,
        users=users,
        parties=parties,
        tags=tags,
        usernames=usernames,
        to_all=to_all,
        sender=sender,
        source=source,
    )
    return deliver(outgoing.log, message.attachment)


# The task's name, a contract with running deployments (routes and queued messages name it).
SEND_MESSAGE_TASK = "wecom_integration.tasks.send_message"


def send_async(
    tenant,
    message,
    users=(),
    parties=(),
    tags=(),
    usernames=(),
    *,
    to_all=False,
    sender=None,
    source="api",
):
    """Check and log ``message`` now, and send it from a Celery worker (queue "bulk") once the current
    transaction commits. Returns the queued MessageLog; its status changes as the worker goes.

    A file to upload travels in the task's arguments (base64), within WeCom's 20 MB limit.
    """
    outgoing = prepare(
        tenant,
        message,
        users=users,
        parties=parties,
        tags=tags,
        usernames=usernames,
        to_all=to_all,
        sender=sender,
        source=source,
    )
    attachment = message.attachment.to_json() if message.attachment else None
    log_id = outgoing.log.pk
    # After commit, or a worker could look for the log before it exists.
    transaction.on_commit(lambda: queueing.delay(SEND_MESSAGE_TASK, log_id, attachment))
    return outgoing.log


def reply_to_inbox(tenant, wecom_userid, text, sender=None):
    """Answer an employee who wrote to the app: send ``text`` to them and, when WeCom accepted it, add
    it to their conversation in the inbox. Returns (MessageLog, InboxMessage or None).

    https://developer.work.weixin.qq.com/document/path/90236
    """
    log = send(tenant, Message.text(text), users=[wecom_userid], sender=sender, source="inbox")
    if log.status != MessageLog.Status.SENT:
        return log, None
    message = InboxMessage.objects.create(
        tenant=tenant,
        wecom_userid=wecom_userid,
        direction=InboxMessage.Direction.OUT,
        msg_type="text",
        content=text,
        read=True,
    )
    return log, message
