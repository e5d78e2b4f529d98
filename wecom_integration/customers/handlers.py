"""Customers' row in the callback table: customer-contact changes (change_external_contact and the like)
applied to the mirror of external contacts and their follow users."""

from wecom_integration import signals
from wecom_integration.callbacks import registry
from wecom_integration.customers import services, tags
from wecom_integration.events import ExternalTagEvent


@registry.handles("customer", signal=signals.customer_changed)
def on_customer_change(row, event) -> dict | None:
    if isinstance(event, ExternalTagEvent):
        tags.apply_tag_event(row.tenant_id, event)
    change = services.apply_customer_change(row.tenant_id, event)
    if not change.applied:
        return None
    return {
        "change_type": event.change_type,
        "external_contact": change.external_contact,
        "follow_user": change.follow_user,
        "group": change.group,
    }
