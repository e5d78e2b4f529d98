"""Two-step verification (二次验证) of employees who follow the tenant's app (seed 003).

When the corp turns on two-step verification, an employee who follows the app is first sent to the
company's verification page; once the company has checked who they are, it calls ``user/authsucc``
and WeCom lets the follow complete. The follow (``subscribe``) and unfollow (``unsubscribe``) events
are kept as stored callback events; :func:`follow_events` and :func:`last_follow_event` read them, and
:func:`authsucc` is the call the sign-in flow makes once the employee has proved who they are.

https://developer.work.weixin.qq.com/document/path/90203 (authsucc) and 90240 (subscribe events).
"""

from __future__ import annotations

import logging

from ..client import client_for
from ..events import AppEvent, SubscribeEvent, UnsubscribeEvent
from ..models import CallbackEvent

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
        events = events.filter(from_user=userid)
    return events.order_by("-create_time", "-id")


def last_follow_event(tenant_id: int, userid: str) -> CallbackEvent | None:
    """The WeCom user's latest follow or unfollow event, or None."""
    return follow_events(tenant_id, userid).first()


def is_following(tenant_id: int, userid: str) -> bool:
    """Whether the latest follow event of the user is a ``subscribe``."""
    last = last_follow_event(tenant_id, userid)
    return last is not None and last.event == "subscribe"


def authsucc(config, userid: str) -> dict:
    """Tell WeCom that ``userid`` passed the company's two-step verification, so their follow of
    the app completes. Uses the app Secret; raises the client's ``WeComError`` subclasses.

    https://developer.work.weixin.qq.com/document/path/90203
    """
    answer = client_for(config, "app").user.authsucc(userid)
    logger.info("Two-step verification of WeCom user %s confirmed (tenant %s)", userid, config.tenant_id)
    return answer
