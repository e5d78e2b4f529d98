"""Sign-in's row in the callback table: app events, of which two-step verification needs the members'
follow (subscribe) events; every app event reaches host code through ``app_event_received``."""

from wecom_integration import signals
from wecom_integration.callbacks import registry
from wecom_integration.login import twostep


@registry.handles("event", signal=signals.app_event_received)
def on_app_event(row, event) -> dict:
    twostep.record_follow_event(row, event)
    return {}
