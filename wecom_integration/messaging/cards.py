"""Clicks on template cards, and the card update that answers each one; recalling sent messages.

A member's click arrives as ``template_card_event`` on the app's callback URL. :func:`record_click` (the
callback table's row for kind "card") stores it as a :class:`CardClick`, with the card it belongs to (found
by its task_id), and queues ``wecom_integration.tasks.update_template_card`` once the handling commits.
The task calls :func:`answer_click`: the host's adapter decides the new card
(``template_card_update(tenant, click)``, see :class:`~wecom_integration.login.adapter.DefaultWeComAdapter`),
and ``message/update_template_card`` spends the click's response_code on it (valid once, for 72 hours).
By default the clicked button's choice is shown as done: the buttons become one disabled button labelled
with it (``button.replace_name``).

:func:`recall` takes back a message of the last 24 hours (``message/recall``) and records who did it.

https://developer.work.weixin.qq.com/document/path/90240 (the click),
https://developer.work.weixin.qq.com/document/path/94888 (the update),
https://developer.work.weixin.qq.com/document/path/94867 (the recall)
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from wecom_integration import observability, queueing
from wecom_integration.client import WeComError, client_for
from wecom_integration.directory.services import canonical_userid
from wecom_integration.extension import get_adapter
from wecom_integration.messaging.composing import Message, NotConfigured
from wecom_integration.messaging.models import REPLACE_NAME_MAX_CHARS
from wecom_integration.messaging.templatecard import clicked_choice
from wecom_integration.models import CardClick, MessageLog, WeComConfig

logger = logging.getLogger(__name__)

# The task's name, a contract with running deployments.
UPDATE_CARD_TASK = "wecom_integration.tasks.update_template_card"
#: WeCom recalls messages of the last 24 hours only (doc 94867).
RECALL_WINDOW = timedelta(hours=24)
#: A click's response_code works for 72 hours (doc 94888).
RESPONSE_CODE_LIFETIME = timedelta(hours=72)


class RecallRefused(ValidationError):
    """The message cannot be recalled (too old, never sent, already recalled); the message says why."""


def record_click(row, event) -> dict:
    """Store a card click once (by its callback row) and queue the card's update after commit."""
    task_id = (event.task_id or "")[:128]
    card = (
        MessageLog.objects.filter(tenant_id=row.tenant_id, task_id=task_id).first() if task_id else None
    )
    content = (card.content.get("template_card") if card is not None else None) or {}
    selected = list(event.selected_items or [])
    click, created = CardClick.objects.get_or_create(
        event=row,
        defaults={
            "tenant_id": row.tenant_id,
            "message": card,
            "wecom_userid": canonical_userid(row.tenant_id, (event.from_user_name or "")[:64]),
            "task_id": task_id,
            "card_type": (event.card_type or content.get("card_type") or "")[:32],
            "event_key": (event.event_key or "")[:1024],
            "selected_items": selected,
            "choice": clicked_choice(content, event.event_key, selected)[:255],
            "response_code": (event.response_code or "")[:255],
        },
    )
    if created and click.response_code:
        click_id = click.pk
        transaction.on_commit(lambda: queueing.delay(UPDATE_CARD_TASK, click_id))
    elif created:
        click.status, click.errmsg = CardClick.Status.UNCHANGED, gettext("The click carried no response code.")
        click.save(update_fields=["status", "errmsg", "updated_at"])
    return {"click": click}


def _update_from(decision):
    """The adapter's decision as the keyword arguments of ``update_template_card``, or None (no update)."""
    if decision is None or decision is False:
        return None
    if isinstance(decision, str):
        if not decision.strip():
            return None
        return {"replace_name": decision[:REPLACE_NAME_MAX_CHARS]}
    if isinstance(decision, dict):
        card = Message.template_card(decision).body  # WeCom's rules: ValidationError for a card it would refuse
        return {"card": card}
    raise TypeError("template_card_update returns None, a text (the done button) or a template card (a dict)")


def answer_click(click_id):
    """Update the clicked card as the adapter decides (``template_card_update``), with the click's
    response_code; record what was sent and WeCom's answer. Runs once per click: the code works once."""
    with transaction.atomic():
        # Only the click's row is locked: PostgreSQL refuses FOR UPDATE on the outer join to a missing card.
        click = (
            CardClick.objects.select_for_update(of=("self",))
            .select_related("tenant", "message")
            .filter(pk=click_id)
            .first()
        )
        if click is None or click.status != CardClick.Status.PENDING:
            return click
        code = click.response_code
        click.response_code = ""  # spent whatever happens next: never tried twice
        if timezone.now() - click.created_at > RESPONSE_CODE_LIFETIME:
            return _finish(click, CardClick.Status.FAILED, errmsg=gettext("The click's response code expired (72 h)."))
        try:
            update = _update_from(get_adapter().template_card_update(click.tenant, click))
        except ValidationError as exc:
            return _finish(click, CardClick.Status.FAILED, errmsg="; ".join(exc.messages))
        if update is None:
            return _finish(click, CardClick.Status.UNCHANGED)
        config = WeComConfig.objects.filter(tenant=click.tenant, enabled=True).first()
        if config is None:
            return _finish(click, CardClick.Status.FAILED, update=update, errmsg=NotConfigured().message)
        try:
            client_for(config, "app").message.update_template_card(code, userids=[click.wecom_userid], **update)
        except WeComError as exc:
            return _finish(click, CardClick.Status.FAILED, update=update, errcode=exc.errcode or 0,
                           errmsg=str(exc.errmsg or exc))
        return _finish(click, CardClick.Status.UPDATED, update=update)


def _finish(click, status, *, update=None, errcode=0, errmsg=""):
    click.status, click.errcode, click.errmsg = status, errcode, errmsg[:255]
    if update is not None:
        click.update = update
    click.save(update_fields=["status", "update", "errcode", "errmsg", "response_code", "updated_at"])
    observability.log_event(
        logger, "card.click_answered", tenant=click.tenant_id, click=click.pk, outcome=status, errcode=errcode
    )
    return click


def recall_refusal(log, now=None):
    """Why ``log`` cannot be recalled (a translated text), or None when it can."""
    now = now or timezone.now()
    if log.recalled_at is not None:
        return gettext("This message was already recalled.")
    if not log.msgids:
        return gettext("This message was never delivered, so there is nothing to recall.")
    if now - log.created_at > RECALL_WINDOW:
        return gettext("WeCom recalls messages of the last 24 hours only; this one was sent %(when)s.") % {
            "when": timezone.localtime(log.created_at).strftime("%Y-%m-%d %H:%M")
        }
    return None


def recall(log, user=None):
    """Recall every part of a sent message (each msgid WeCom answered) and record who did it and when.

    Raises :class:`RecallRefused` when WeCom would not (older than 24 hours, never delivered, already
    recalled), :class:`NotConfigured` without a configuration, and WeComError for WeCom's refusal; the
    parts recalled before a refusal stay recalled. https://developer.work.weixin.qq.com/document/path/94867
    """
    refusal = recall_refusal(log)
    if refusal:
        raise RecallRefused(refusal, code="recall_refused")
    config = WeComConfig.objects.filter(tenant_id=log.tenant_id, enabled=True).first()
    if config is None:
        raise NotConfigured()
    message_api = client_for(config, "app").message
    for msgid in log.msgids:
        if msgid:
            message_api.recall(msgid)
    log.recalled_at = timezone.now()
    log.recalled_by = user if user is not None and user.is_authenticated else None
    log.save(update_fields=["recalled_at", "recalled_by"])
    observability.log_event(
        logger, "message.recalled", tenant=log.tenant_id, message=log.pk,
        actor=log.recalled_by_id, parts=len(log.msgids),
    )
    return log


__all__ = [
    "RECALL_WINDOW",
    "UPDATE_CARD_TASK",
    "RecallRefused",
    "answer_click",
    "recall",
    "recall_refusal",
    "record_click",
]
