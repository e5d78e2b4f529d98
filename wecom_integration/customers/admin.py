"""The customers (external contacts) and their follow users, as WeCom reported them: read-only."""

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from wecom_integration import converters  # noqa: F401  (registers the <wecomid:...> path converter)
from wecom_integration.models import CustomerGroup, CustomerGroupMember, ExternalContact, FollowUser
from wecom_integration.scoping import ReadOnlyTenantAdmin


class ReadOnlyInline(admin.TabularInline):
    """Rows shown on a page already scoped to the tenant (a customer's, a group's): shown, never edited."""

    extra = 0
    can_delete = False

    def has_view_permission(self, request, obj=None):
        return True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class FollowUserInline(ReadOnlyInline):
    model = FollowUser
    fields = ("userid", "remark", "add_time", "state", "visible", "removed", "removed_at")
    readonly_fields = fields


@admin.register(ExternalContact)
class ExternalContactAdmin(ReadOnlyTenantAdmin):
    list_display = (
        "name",
        "external_userid",
        "tenant",
        "type",
        "corp_name",
        "linked_user",
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
        "unionid",
        "linked_user",
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


class CustomerGroupMemberInline(ReadOnlyInline):
    model = CustomerGroupMember
    fields = ("name", "userid", "type", "join_scene", "join_time", "invitor")
    readonly_fields = fields


@admin.register(CustomerGroup)
class CustomerGroupAdmin(ReadOnlyTenantAdmin):
    """Customer groups (客户群) as WeCom reported them: owner, members with how they joined, dismissed."""

    list_display = ("name", "chat_id", "owner", "member_count", "created", "dismissed", "tenant")
    list_filter = ("dismissed",)
    search_fields = ("name", "chat_id", "owner", "members__userid", "members__name")
    list_select_related = ("tenant",)
    fields = ("tenant", "chat_id", "name", "owner", "notice", "created", "dismissed", "dismissed_at", "updated_at")
    readonly_fields = fields
    inlines = [CustomerGroupMemberInline]

    @admin.display(description=_("members"))
    def member_count(self, obj):
        return obj.members.count()
