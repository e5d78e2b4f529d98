"""The inbox: what members sent to the app, read-only, with a link to answer them from the send page."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from wecom_integration import converters  # noqa: F401  (registers the <wecomid:...> path converter)
from wecom_integration.messaging import inbox
from wecom_integration.models import InboxMessage, WeComUser
from wecom_integration.scoping import ReadOnlyTenantAdmin


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
