"""The directory's row in the callback table: contact-book changes (change_contact) applied to the mirror,
tag changes (update_tag) to the mirror of tags."""

from wecom_integration import signals
from wecom_integration.callbacks import registry
from wecom_integration.directory import services, tags
from wecom_integration.events import ContactTagEvent


@registry.handles("contact", signal=signals.contact_changed)
def on_contact_change(row, event) -> dict | None:
    if isinstance(event, ContactTagEvent):
        tags.apply_tag_event(row.tenant_id, event)
        return {"change_type": event.change_type, "wecom_user": None, "department": None}
    change = services.apply_contact_change(row.tenant_id, event)
    if not change.applied:
        return None
    return {"change_type": event.change_type, "wecom_user": change.wecom_user, "department": change.department}
