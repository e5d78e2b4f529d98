"""The event log (every stored callback, with a "retry"), the inbox and the customers.

All three are read-only records of what WeCom sent: nobody adds or edits them here. A tenant admin
sees their own tenants' rows only (TenantScopedAdminMixin).
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import converters  # noqa: F401  (registers the <wecomid:...> path converter)
from ..display import LabelledJSONAdmin
from ..models import CallbackEvent, ExternalContact, FollowUser, InboxMessage, WeComUser
from ..services import callbacks, inbox
from .scoping import TenantScopedAdminMixin


class ReadOnlyTenantAdmin(LabelledJSONAdmin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Viewable by the tenant's admins, never added or changed by hand."""

    tenant_admin_can_add = False

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if request.user.is_superuser:
            filters.append("tenant")
        return filters


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
    actions = ["retry_selected", "dispatch_again"]
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
        return inbox.summarize_reply(obj.reply) if obj.reply else "-"

    def has_retry_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

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
        dispatched, failed = callbacks.redispatch_events(queryset)
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


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "tenant", "conversation_link", "direction", "msg_type", "excerpt", "read")
    list_filter = ("direction", "read", "msg_type")
    search_fields = ("wecom_userid", "content")
    list_select_related = ("tenant",)
    readonly_fields = (
        "tenant",
        "wecom_userid",
        "direction",
        "msg_type",
        "content",
        "event",
        "created_at",
        "read",
    )
    change_list_template = "admin/wecom_integration/inboxmessage/change_list.html"

    @admin.display(description=_("WeCom user"), ordering="wecom_userid")
    def conversation_link(self, obj):
        url = reverse(
            "admin:wecom_integration_inboxmessage_conversation", args=[obj.tenant_id, obj.wecom_userid]
        )
        return format_html('<a href="{}">{}</a>', url, obj.wecom_userid)

    @admin.display(description=_("content"))
    def excerpt(self, obj):
        return Truncator(obj.content).chars(80)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "conversations/",
                self.admin_site.admin_view(self.conversations_view),
                name="%s_%s_conversations" % info,
            ),
            path(
                "conversations/<int:tenant_id>/<wecomid:wecom_userid>/",
                self.admin_site.admin_view(self.conversation_view),
                name="%s_%s_conversation" % info,
            ),
        ] + super().get_urls()

    def _context(self, request, title):
        return {**self.admin_site.each_context(request), "opts": self.opts, "title": title}

    def conversations_view(self, request):
        """One line per WeCom user who wrote to the app: last message time, count, unread."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        page = Paginator(inbox.conversations(self.get_queryset(request)), 100).get_page(request.GET.get("p"))
        rows = list(page.object_list)
        names = {
            (user.tenant_id, user.userid): user.name
            for user in WeComUser.objects.filter(
                tenant_id__in={row["tenant_id"] for row in rows},
                userid__in={row["wecom_userid"] for row in rows},
            ).only("tenant_id", "userid", "name")
        }
        for row in rows:
            row["name"] = names.get((row["tenant_id"], row["wecom_userid"]), "")
            row["url"] = reverse(
                "admin:wecom_integration_inboxmessage_conversation",
                args=[row["tenant_id"], row["wecom_userid"]],
            )
        context = {**self._context(request, _("Conversations")), "rows": rows, "page": page}
        return TemplateResponse(request, "admin/wecom_integration/inboxmessage/conversations.html", context)

    def conversation_view(self, request, tenant_id, wecom_userid):
        """The messages between the app and one WeCom user, oldest first; opening it marks them read."""
        if not self.has_view_permission(request) or not self.allowed_tenant(request, tenant_id):
            raise PermissionDenied
        paginator = Paginator(inbox.conversation(tenant_id, wecom_userid), 200)
        # The newest messages first come into view, as in any chat.
        page = paginator.get_page(request.GET.get("p") or paginator.num_pages)
        inbox.mark_read(tenant_id, wecom_userid)
        wecom_user = WeComUser.objects.filter(tenant_id=tenant_id, userid__iexact=wecom_userid).first()
        name = wecom_user.name if wecom_user is not None and wecom_user.name else wecom_userid
        title = _("Conversation with %(name)s") % {"name": name}
        context = {
            **self._context(request, title),
            "reply_url": _inbox_reply_url(tenant_id, wecom_userid),
            "wecom_userid": wecom_userid,
            "wecom_user": wecom_user,
            "page": page,
            "conversation_messages": page.object_list,
        }
        return TemplateResponse(request, "admin/wecom_integration/inboxmessage/conversation.html", context)


def _inbox_reply_url(tenant_id, wecom_userid):
    """The messaging admin's reply page for this conversation, when that admin is installed."""
    try:
        return reverse("admin:wecom_integration_messagelog_inbox_reply", args=[tenant_id, wecom_userid])
    except NoReverseMatch:
        return None


class FollowUserInline(admin.TabularInline):
    model = FollowUser
    fields = ("userid", "remark", "add_time", "state", "visible", "removed", "removed_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    # The customer's page is already scoped to the tenant: what is on it may be shown.
    def has_view_permission(self, request, obj=None):
        return True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ExternalContact)
class ExternalContactAdmin(ReadOnlyTenantAdmin):
    list_display = (
        "name",
        "external_userid",
        "tenant",
        "type",
        "corp_name",
        "removed",
        "removed_at",
        "updated_at",
    )
    list_filter = ("removed", "type")
    search_fields = ("name", "external_userid", "corp_name", "follow_users__userid")
    list_select_related = ("tenant",)
    readonly_fields = (
        "tenant",
        "external_userid",
        "name",
        "type",
        "avatar",
        "gender",
        "corp_name",
        "removed",
        "removed_at",
        "updated_at",
    )
    exclude = ("fingerprint",)
    inlines = [FollowUserInline]

    def changelist_view(self, request, extra_context=None):
        hidden = FollowUser.objects.filter(
            contact__in=self.get_queryset(request), visible=False, removed=False
        ).values("userid").distinct().count()
        if hidden:
            self._warn_outside_range(request, hidden)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        contact = self.get_object(request, object_id)
        if contact is not None:
            hidden = contact.follow_users.filter(visible=False, removed=False).count()
            if hidden:
                self._warn_outside_range(request, hidden)
        return super().change_view(request, object_id, form_url, extra_context)

    def _warn_outside_range(self, request, count):
        """Relations the customer sync could not see (their member is outside the visible range of the
        app that reads customers, doc 92994) are kept, not ended: say so, and what to change."""
        self.message_user(
            request,
            ngettext(
                "The customers of %(count)d member are not visible to the app that reads customers: the "
                "member is outside its visible range. Their relations are kept as last seen, not ended. "
                "To see them, add the member or their department to the app's visible range in the WeCom "
                "admin console (App Management → the app → Visible Range; 应用管理 → 应用 → 可见范围), "
                "then run the customer sync again.",
                "The customers of %(count)d members are not visible to the app that reads customers: the "
                "members are outside its visible range. Their relations are kept as last seen, not ended. "
                "To see them, add the members or their departments to the app's visible range in the WeCom "
                "admin console (App Management → the app → Visible Range; 应用管理 → 应用 → 可见范围), "
                "then run the customer sync again.",
                count,
            ) % {"count": count},
            messages.WARNING,
        )
