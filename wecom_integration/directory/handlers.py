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


@registry.handles_many("contact")
def on_contact_changes(items) -> list[dict | None]:
    """A worker's batch of contact changes: the members they name read in one query, written in one
    statement each for the new and the changed ones (services.contact_batch)."""
    with services.contact_batch((row.tenant_id, event) for row, event in items):
        return [on_contact_change(row, event) for row, event in items]
