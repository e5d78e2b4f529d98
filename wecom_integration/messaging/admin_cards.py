"""Clicks on the template cards the app sent: who chose what on which card, and how the card was updated."""

from django.contrib import admin

from wecom_integration.models import CardClick
from wecom_integration.scoping import ReadOnlyTenantAdmin


@admin.register(CardClick)
class CardClickAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "tenant", "wecom_userid", "task_id", "card_type", "choice", "status")
    list_filter = ("status", "card_type")
    search_fields = ("wecom_userid", "task_id", "event_key", "choice")
    list_select_related = ("tenant", "message")
    date_hierarchy = "created_at"
    # The response_code is a single-use credential: never shown.
    fields = readonly_fields = (
        "tenant",
        "created_at",
        "wecom_userid",
        "message",
        "task_id",
        "card_type",
        "event_key",
        "selected_items",
        "choice",
        "status",
        "update",
        "errcode",
        "errmsg",
        "updated_at",
        "event",
    )
