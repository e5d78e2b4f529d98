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


registry.replies(inbox.passive_reply, inbox.render_reply, inbox.summarize_reply)


@registry.handles("card", signal=signals.card_clicked)
def on_card_click(row, event) -> dict:
    return cards.record_click(row, event)
