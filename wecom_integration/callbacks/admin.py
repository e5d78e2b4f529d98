"""The event log: every stored callback, with "retry" and "dispatch again".

A read-only record of what WeCom sent: nobody adds or edits events here. A tenant admin sees their own
tenants' rows only (TenantScopedAdminMixin).
"""

from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from wecom_integration import converters  # noqa: F401  (registers the <wecomid:...> path converter)
from wecom_integration.callbacks import handling, registry
from wecom_integration.callbacks import services as callbacks
from wecom_integration.models import CallbackEvent
from wecom_integration.scoping import ReadOnlyTenantAdmin


def _pretty_xml(text):
    """The XML indented for reading, or as stored if it does not parse (it always did once)."""
    from defusedxml.minidom import parseString

    try:
        pretty = parseString(text.encode("utf-8")).documentElement.toprettyxml(indent="  ")
    except Exception:
        return text
    return "\n".join(line for line in pretty.splitlines() if line.strip())


@admin.register(CallbackEvent)
class CallbackEventAdmin(ReadOnlyTenantAdmin):
    list_display = (
        "received_at",
        "tenant",
        "kind",
        "type_label",
        "change_type",
        "subject",
        "status",
        "attempts",
    )
    list_filter = ("status", "kind", "msg_type", "event", "change_type", "received_at")
    search_fields = ("subject", "from_user", "dedupe_key")
    list_select_related = ("tenant",)
    date_hierarchy = "received_at"
    actions = ["retry_selected", "dispatch_again", "dismiss_selected"]
    change_form_template = "admin/wecom_integration/callbackevent/change_form.html"
    fieldsets = (
        (None, {"fields": ("tenant", "kind", "status", "attempts", "received_at", "handled_at")}),
        (
            _("Event"),
            {
                "fields": (
                    "msg_type",
                    "event",
                    "change_type",
                    "subject",
                    "from_user",
                    "wecom_time",
                    "dedupe_key",
                )
            },
        ),
        (_("Error"), {"fields": ("error_text",)}),
        (_("Decrypted XML"), {"fields": ("decrypted_xml", "reply_text", "request_id")}),
    )
    readonly_fields = (
        "tenant",
        "kind",
        "status",
        "attempts",
        "received_at",
        "handled_at",
        "msg_type",
        "event",
        "change_type",
        "subject",
        "from_user",
        "wecom_time",
        "dedupe_key",
        "error_text",
        "decrypted_xml",
        "reply_text",
        "request_id",
    )

    @admin.display(description=_("type"), ordering="event")
    def type_label(self, obj):
        return obj.event or obj.msg_type

    @admin.display(description=_("WeCom time"), ordering="create_time")
    def wecom_time(self, obj):
        from datetime import UTC, datetime

        if not obj.create_time:
            return "-"
        try:
            return (
                f"{datetime.fromtimestamp(obj.create_time, tz=UTC):%Y-%m-%d %H:%M:%S} UTC ({obj.create_time})"
            )
        except (OverflowError, OSError, ValueError):
            return str(obj.create_time)

    @admin.display(description=_("error"))
    def error_text(self, obj):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.error) if obj.error else "-"

    @admin.display(description=_("decrypted XML"))
    def decrypted_xml(self, obj):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', _pretty_xml(obj.xml))

    @admin.display(description=_("passive reply"))
    def reply_text(self, obj):
        replier = registry.replier()
        return replier.summarize(obj.reply) if obj.reply and replier is not None else "-"

    def has_retry_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    @admin.action(description=_("Dismiss the selected failed events"), permissions=["retry"])
    def dismiss_selected(self, request, queryset):
        """Give up on failed events: they leave the requeue sweep, and retention purges them like handled
        ones (a failed event is otherwise kept whatever its age)."""
        dismissed = queryset.filter(status=CallbackEvent.Status.FAILED).update(status=CallbackEvent.Status.DISMISSED)
        self.message_user(
            request,
            ngettext("%(count)d failed event was dismissed.", "%(count)d failed events were dismissed.", dismissed)
            % {"count": dismissed},
            messages.SUCCESS,
        )

    @admin.action(description=_("Retry the selected events"), permissions=["retry"])
    def retry_selected(self, request, queryset):
        queued, skipped = callbacks.retry_events(queryset)
        if queued:
            self.message_user(
                request,
                ngettext(
                    "%(count)d event was queued to be handled again.",
                    "%(count)d events were queued to be handled again.",
                    queued,
                )
                % {"count": queued},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d event was already handled and was left alone.",
                    "%(count)d events were already handled and were left alone.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )

    @admin.action(description=_("Dispatch the selected events again"), permissions=["retry"])
    def dispatch_again(self, request, queryset):
        """Run the built-in handlers and send the signals once more, handled events included (the
        handlers are idempotent; receivers get ``replay=True``)."""
        dispatched, failed = handling.redispatch_events(queryset)
        if dispatched:
            self.message_user(
                request,
                ngettext(
                    "%(count)d event was dispatched again.",
                    "%(count)d events were dispatched again.",
                    dispatched,
                )
                % {"count": dispatched},
                messages.SUCCESS,
            )
        if failed:
            self.message_user(
                request,
                ngettext(
                    "%(count)d event failed again; its error is on its page.",
                    "%(count)d events failed again; their errors are on their pages.",
                    failed,
                )
                % {"count": failed},
                messages.ERROR,
            )

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="%s_%s_retry" % info,
            ),
        ] + super().get_urls()

    def retry_view(self, request, object_id):
        """POST: queue one event again, then back to its page."""
        event = self.tenant_admin_view(request, object_id, "view")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if callbacks.retry_event(event.pk):
            self.message_user(request, _("The event was queued to be handled again."), messages.SUCCESS)
        else:
            self.message_user(
                request, _("The event was already handled and was left alone."), messages.WARNING
            )
        return HttpResponseRedirect(reverse("admin:wecom_integration_callbackevent_change", args=[event.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        event = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if event is not None and event.status != CallbackEvent.Status.HANDLED:
            extra_context["retry_url"] = reverse(
                "admin:wecom_integration_callbackevent_retry", args=[event.pk]
            )
        return super().change_view(request, object_id, form_url, extra_context)
