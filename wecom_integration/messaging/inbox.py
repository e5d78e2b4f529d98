"""The tenant's inbox (seed 000's "space"): app messages from employees and the replies they got.

Answering a message
-------------------
WeCom lets the app answer a message in the HTTP answer itself, encrypted (a *passive reply*,
https://developer.work.weixin.qq.com/document/path/90241): text, image, voice, video or news. Host
projects answer through a reply handler::

    from wecom_integration.events import TextMessage, TextReply
    from wecom_integration.messaging.inbox import register_reply_handler

    @register_reply_handler
    def echo(event, config):
        if isinstance(event, TextMessage) and event.content == "ping":
            return TextReply("pong")
        return None

A handler gets the parsed event (a message or an app event such as a menu click) and the tenant's
``WeComConfig``, and returns a reply (``TextReply``, ``ImageReply``, ``VoiceReply``, ``VideoReply``,
``NewsReply`` from :mod:`wecom_integration.events`, or the dict form ``{"type": "text", "content":
...}``) or None. The first handler that returns a reply wins; with none, a text message gets the
tenant's auto-reply (``WeComConfig.auto_reply``) if it has one.

Handlers run while WeCom waits for the answer (5 s at most, shared with everything else): they must
be fast, call no WeCom API, and have no side effects, since a delivery WeCom repeats may call them
again. Do the work in a ``message_received`` receiver (:mod:`wecom_integration.signals`) instead. A
handler that raises is logged and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict

from django.db.models import Count, Max, Q

from wecom_integration.directory.services import canonical_userid, canonical_userids
from wecom_integration.events import (
    Article,
    Event,
    ImageMessage,
    ImageReply,
    LinkMessage,
    LocationMessage,
    NewsReply,
    TextMessage,
    TextReply,
    VideoMessage,
    VideoReply,
    VoiceMessage,
    VoiceReply,
    build_passive_reply_xml,
)
from wecom_integration.models import CallbackEvent, InboxMessage

logger = logging.getLogger("wecom_integration.inbox")

ReplyHandler = Callable[..., object]

_reply_handlers: list[ReplyHandler] = []

_REPLY_TYPE_NAMES = {
    TextReply: "text",
    ImageReply: "image",
    VoiceReply: "voice",
    VideoReply: "video",
    NewsReply: "news",
}


def register_reply_handler(handler: ReplyHandler) -> ReplyHandler:
    """Add a passive-reply handler (see the module docstring); usable as a decorator. Registering
    the same handler twice has no effect."""
    if handler not in _reply_handlers:
        _reply_handlers.append(handler)
    return handler


def unregister_reply_handler(handler: ReplyHandler) -> None:
    """Remove a handler added with :func:`register_reply_handler` (no error if it is absent)."""
    if handler in _reply_handlers:
        _reply_handlers.remove(handler)


def reply_as_dict(reply) -> dict:
    """The JSON-storable dict form of a reply: ``{"type": "text", "content": ...}``,
    ``{"type": "image", "media_id": ...}``, ``{"type": "news", "articles": [{"title": ...}, ...]}``…"""
    if isinstance(reply, dict):
        values = dict(reply)
        if values.get("type") == "news":
            values["articles"] = [
                asdict(article) if isinstance(article, Article) else dict(article)
                for article in values.get("articles") or ()
            ]
        return values
    name = _REPLY_TYPE_NAMES.get(type(reply))
    if name is None:
        raise TypeError("a reply must be a reply dataclass from wecom_integration.events or a dict")
    if isinstance(reply, NewsReply):
        return {
            "type": "news",
            "articles": [
                asdict(article) if isinstance(article, Article) else dict(article)
                for article in reply.articles
            ],
        }
    return {"type": name, **asdict(reply)}


def passive_reply(config, event: Event) -> dict | None:
    """The reply to give WeCom for ``event``, as a dict, or None for a plain "success".

    Asks the registered handlers in order, then falls back to the tenant's auto-reply for text
    messages. Only app messages and app events are answered; a reply that cannot be rendered is
    logged and dropped, so a faulty handler never costs the callback.
    """
    if event.kind not in ("message", "event") or not event.from_user_name:
        return None
    for handler in list(_reply_handlers):
        try:
            reply = handler(event=event, config=config)
        except Exception:
            logger.exception("WeCom reply handler %r failed", handler)
            continue
        if reply is None:
            continue
        try:
            values = reply_as_dict(reply)
            build_passive_reply_xml(event.from_user_name, config.corp_id, values, create_time=0)
        except (TypeError, ValueError):
            logger.exception("WeCom reply handler %r returned a reply that cannot be sent", handler)
            continue
        return values
    if isinstance(event, TextMessage) and config.auto_reply:
        return {"type": "text", "content": config.auto_reply}
    return None


def render_reply(event: Event, corp_id: str, reply: dict) -> str | None:
    """The plaintext passive-reply XML for ``reply`` (to the sender of ``event``), or None if it
    cannot be rendered (logged)."""
    try:
        return build_passive_reply_xml(event.from_user_name or "", corp_id, reply)
    except (TypeError, ValueError):
        logger.exception("A stored WeCom passive reply cannot be rendered")
        return None


def summarize_message(event: Event) -> str:
    """A readable one-line text of an incoming message for the inbox."""
    if isinstance(event, TextMessage):
        return event.content or ""
    if isinstance(event, ImageMessage):
        return event.pic_url or event.media_id or ""
    if isinstance(event, VoiceMessage):
        return " ".join(part for part in (event.media_id, event.format) if part)
    if isinstance(event, VideoMessage):
        return event.media_id or ""
    if isinstance(event, LocationMessage):
        where = f"({event.location_x}, {event.location_y})"
        return f"{event.label} {where}" if event.label else where
    if isinstance(event, LinkMessage):
        return " ".join(part for part in (event.title, event.url) if part)
    return ""


def summarize_reply(reply: dict) -> str:
    """A readable one-line text of a reply (dict form) for the inbox."""
    kind = reply.get("type")
    if kind == "text":
        return str(reply.get("content") or "")
    if kind == "news":
        return " / ".join(str(article.get("title") or "") for article in reply.get("articles") or ())
    if kind == "video" and reply.get("title"):
        return str(reply["title"])
    return str(reply.get("media_id") or "")


def record_message(row: CallbackEvent, event: Event) -> InboxMessage:
    """Put an incoming message (and the passive reply it got, if any) in the tenant's inbox, once."""
    message, created = InboxMessage.objects.get_or_create(
        event=row,
        defaults={
            "tenant_id": row.tenant_id,
            # The member's id as the mirror spells it, so ZhangSan and zhangsan are one conversation.
            "wecom_userid": canonical_userid(row.tenant_id, (event.from_user_name or "")[:64]),
            "direction": InboxMessage.Direction.IN,
            "msg_type": (event.msg_type or "")[:32],
            "content": summarize_message(event),
        },
    )
    if created and row.reply:
        InboxMessage.objects.create(
            tenant_id=row.tenant_id,
            wecom_userid=message.wecom_userid,
            direction=InboxMessage.Direction.OUT,
            msg_type=str(row.reply.get("type") or "")[:32],
            content=summarize_reply(row.reply),
            read=True,
        )
    return message


def record_messages(items: list[tuple[CallbackEvent, Event]]) -> list[InboxMessage]:
    """:func:`record_message` for each (row, event) of a worker's batch, in one go: the senders' userids
    as the mirror spells them read in one query per tenant, the messages the inbox has already in one,
    and the new ones (with their replies, in the batch's order) written in one INSERT."""
    senders: dict[int, list[str]] = {}
    for row, event in items:
        senders.setdefault(row.tenant_id, []).append((event.from_user_name or "")[:64])
    spelled = {tenant_id: canonical_userids(tenant_id, userids) for tenant_id, userids in senders.items()}
    kept = {message.event_id: message for message in InboxMessage.objects.filter(event__in=[row for row, _ in items])}
    messages, new = [], []
    for row, event in items:
        message = kept.get(row.pk)
        if message is None:
            sender = (event.from_user_name or "")[:64]
            message = kept[row.pk] = InboxMessage(
                event=row,
                tenant_id=row.tenant_id,
                wecom_userid=spelled[row.tenant_id].get(sender, sender),
                direction=InboxMessage.Direction.IN,
                msg_type=(event.msg_type or "")[:32],
                content=summarize_message(event),
            )
            new.append(message)
            if row.reply:
                new.append(
                    InboxMessage(
                        tenant_id=row.tenant_id,
                        wecom_userid=message.wecom_userid,
                        direction=InboxMessage.Direction.OUT,
                        msg_type=str(row.reply.get("type") or "")[:32],
                        content=summarize_reply(row.reply),
                        read=True,
                    )
                )
        messages.append(message)
    if new:
        InboxMessage.objects.bulk_create(new)
    return messages


def conversations(queryset):
    """One row per (tenant, WeCom user) of an InboxMessage queryset: ``tenant_id``,
    ``wecom_userid``, ``last_at``, ``total`` and ``unread`` (incoming not read), newest first."""
    return (
        queryset.values("tenant_id", "wecom_userid")
        .annotate(
            last_at=Max("created_at"),
            total=Count("id"),
            unread=Count("id", filter=Q(direction=InboxMessage.Direction.IN, read=False)),
        )
        .order_by("-last_at")
    )


def conversation(tenant_id: int, wecom_userid: str):
    """The messages between a tenant's app and one WeCom user (the id matched ignoring case), oldest first."""
    wecom_userid = canonical_userid(tenant_id, wecom_userid)
    return InboxMessage.objects.filter(tenant_id=tenant_id, wecom_userid=wecom_userid).order_by(
        "created_at", "id"
    )


def mark_read(tenant_id: int, wecom_userid: str) -> int:
    """Mark a conversation's incoming messages read; returns how many were unread."""
    wecom_userid = canonical_userid(tenant_id, wecom_userid)
    return InboxMessage.objects.filter(
        tenant_id=tenant_id, wecom_userid=wecom_userid, direction=InboxMessage.Direction.IN, read=False
    ).update(read=True)
