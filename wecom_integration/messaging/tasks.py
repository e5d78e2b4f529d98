"""The Celery tasks that deliver a queued message and answer a card click (registered under
``wecom_integration.tasks``).

It runs on the "bulk" queue (``CELERY_TASK_ROUTES``) so a send to thousands never delays callbacks.
"""

import logging

from celery import shared_task

from wecom_integration.client import WeComRateLimited
from wecom_integration.messaging.cards import UPDATE_CARD_TASK, answer_click
from wecom_integration.messaging.services import SEND_MESSAGE_TASK, close, deliver
from wecom_integration.models import MessageLog

logger = logging.getLogger(__name__)

# With WeCom's 60 s block after a minute limit, 10 retries cover ten minutes of limits; past that the
# corp is over its hourly limit and the message is better reported as failed than sent an hour late.
MAX_RATE_LIMIT_RETRIES = 10


@shared_task(bind=True, name=SEND_MESSAGE_TASK, max_retries=MAX_RATE_LIMIT_RETRIES)
def send_message(self, log_id, attachment=None):
    """Deliver MessageLog ``log_id`` (see ``services.messaging.deliver``); ``attachment`` is the JSON
    form of the file to upload, if any. WeCom's frequency limit (45009, 45033) is retried after the
    error's ``retry_after``, resuming at the first batch not yet sent.

    https://developer.work.weixin.qq.com/document/path/90236
    """
    try:
        log = deliver(log_id, attachment, raise_rate_limited=True)
    except MessageLog.DoesNotExist:
        logger.warning("message log %s no longer exists; nothing sent", log_id)
        return None
    except WeComRateLimited as exc:
        if self.request.retries >= self.max_retries:
            # Batches already sent count; the rest are reported as not sent.
            return close(MessageLog.objects.get(pk=log_id)).status
        raise self.retry(countdown=exc.retry_after, exc=exc) from None
    return log.status


@shared_task(name=UPDATE_CARD_TASK)
def update_template_card(click_id):
    """Answer CardClick ``click_id`` with a card update (see ``messaging.cards.answer_click``); its
    response_code works once, so a failed update is recorded, not retried.

    https://developer.work.weixin.qq.com/document/path/94888
    """
    click = answer_click(click_id)
    return click.status if click is not None else None
