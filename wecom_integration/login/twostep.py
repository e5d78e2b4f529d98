"""Two-step verification (二次验证) of employees who follow the tenant's app (seed 003).

When the corp turns on two-step verification, an employee who joins is first sent to the company's
verification page with a ``code``. WeCom lets that code be exchanged (``auth/get_tfa_info`` → userid and
tfa_code) by the contact-sync secret, or by a self-built app when the page is the app's own OAuth link and
the member is in its visible range; once the company has checked who they are, ``user/tfa_succ`` with the
same credential lets them in. ``WeComConfig.two_step_credential`` says which credential this tenant set up.
The follow (``subscribe``) and unfollow (``unsubscribe``) events are kept as stored callback events;
:func:`follow_events` and :func:`last_follow_event` read them.

https://developer.work.weixin.qq.com/document/path/99499 (get_tfa_info), 99500 (tfa_succ), 99521 (the
verification page), 90203 (the older authsucc) and 90240 (subscribe events).
"""

from __future__ import annotations

import logging

from wecom_integration.client import client_for
from wecom_integration.events import AppEvent, SubscribeEvent, UnsubscribeEvent
from wecom_integration.models import CallbackEvent

logger = logging.getLogger("wecom_integration.twostep")

FOLLOW_EVENTS = ("subscribe", "unsubscribe")


def record_follow_event(row: CallbackEvent, event: AppEvent) -> bool:
    """Note a follow or unfollow of the app; True if ``event`` was one.

    The stored callback event is the record (nothing else to write); this logs it so an operator
    can follow a verification through.
    """
    if not isinstance(event, (SubscribeEvent, UnsubscribeEvent)):
        return False
    logger.info(
        "WeCom user %s %s the app (tenant %s, agent %s)",
        event.from_user_name,
        "followed" if isinstance(event, SubscribeEvent) else "unfollowed",
        row.tenant_id,
        event.agent_id,
    )
    return True


def follow_events(tenant_id: int, userid: str | None = None):
    """The tenant's stored follow/unfollow events, newest first (of one WeCom user if given)."""
    events = CallbackEvent.objects.filter(tenant_id=tenant_id, msg_type="event", event__in=FOLLOW_EVENTS)
    if userid is not None:
        events = events.filter(from_user__iexact=userid)  # WeCom userids ignore case
    return events.order_by("-create_time", "-id")


def last_follow_event(tenant_id: int, userid: str) -> CallbackEvent | None:
    """The WeCom user's latest follow or unfollow event, or None."""
    return follow_events(tenant_id, userid).first()


def is_following(tenant_id: int, userid: str) -> bool:
    """Whether the latest follow event of the user is a ``subscribe``."""
    last = last_follow_event(tenant_id, userid)
    return last is not None and last.event == "subscribe"


def credential_kind(config) -> str:
    """The secret kind that exchanges the verification page's code: "app" or "contacts"."""
    return "app" if getattr(config, "two_step_credential", "") == "app" else "contacts"


def exchange_page_code(config, code: str) -> dict:
    """The verification page's ``code`` → ``{userid, tfa_code}``, with the configured credential.
    https://developer.work.weixin.qq.com/document/path/99499
    """
    return client_for(config, credential_kind(config)).oauth.get_tfa_info(code)


def confirm(config, userid: str, tfa_code: str) -> dict:
    """Tell WeCom that ``userid`` passed the company's two-step verification, so they may join. Raises the
    client's ``WeComError`` subclasses. https://developer.work.weixin.qq.com/document/path/99500
    """
    answer = client_for(config, credential_kind(config)).user.tfa_succ(userid, tfa_code)
    logger.info("Two-step verification of WeCom user %s confirmed (tenant %s)", userid, config.tenant_id)
    return answer
