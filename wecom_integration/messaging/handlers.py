"""Messaging's rows in the callback table: messages members send to the app land in the inbox, the
app's passive auto-replies are decided at receipt and rendered into the answer, and clicks on the template
cards the app sent are recorded and answered with a card update."""

from wecom_integration import signals
from wecom_integration.callbacks import registry
from wecom_integration.messaging import cards, inbox


@registry.handles("message", signal=signals.message_received)
def on_message(row, event) -> dict:
    message = inbox.record_message(row, event)
    return {"message": message, "reply": row.reply}


@registry.handles_many("message")
def on_messages(items) -> list[dict]:
    """A worker's batch of messages: the inbox written in one INSERT (inbox.record_messages)."""
    messages = inbox.record_messages(items)
    return [{"message": message, "reply": row.reply} for (row, _event), message in zip(items, messages, strict=True)]


registry.replies(inbox.passive_reply, inbox.render_reply, inbox.summarize_reply)


@registry.handles("card", signal=signals.card_clicked)
def on_card_click(row, event) -> dict:
    return cards.record_click(row, event)
