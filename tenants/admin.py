from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .admin_scoping import TenantScopedAdminMixin
from .models import Membership, Tenant

admin.site.site_header = _("WeCom integration")
admin.site.site_title = _("WeCom integration")
admin.site.index_title = _("Administration")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "status", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    tenant_lookup = ""
    tenant_admin_can_add = False
    list_display = ("id", "name", "code", "created_at")
    search_fields = ("name", "code")
    readonly_fields = ("created_at",)
    change_form_template = "admin/tenants/tenant/change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        tenant = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), "tenant_links": tenant_links(tenant)}
        return super().change_view(request, object_id, form_url, extra_context)


def tenant_links(tenant):
    """The tenant's screens, each one click from its page (filled in by the WeCom app)."""
    from django.urls import NoReverseMatch, reverse

    links = []
    for label, name, query in TENANT_SCREENS:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        links.append((label, f"{url}?{query.format(tenant=tenant.pk)}" if query else url))
    return links


# (label, admin URL name, query) — the WeCom app registers these models.
TENANT_SCREENS = [
    (_("Members"), "admin:tenants_membership_changelist", "tenant__id__exact={tenant}"),
    (
        _("Pending approvals"),
        "admin:tenants_membership_changelist",
        "tenant__id__exact={tenant}&status__exact=pending",
    ),
]


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "status", "created_at")
    list_filter = ("status", "role", "tenant")
    search_fields = ("user__username", "user__first_name", "user__last_name", "tenant__name", "tenant__code")
    list_select_related = ("user", "tenant")
    autocomplete_fields = ("user",)
    actions = ("approve", "reject")
    tenant_admin_can_delete = True

    def get_readonly_fields(self, request, obj=None):
        # A tenant admin cannot move a membership to another tenant or grant rights outside theirs.
        if obj is not None and not request.user.is_superuser:
            return ("user", "tenant")
        return ()

    @admin.action(description=_("Approve selected pending members"))
    def approve(self, request, queryset):
        self._decide(request, queryset, Membership.Status.ACTIVE)

    @admin.action(description=_("Reject selected pending members"))
    def reject(self, request, queryset):
        self._decide(request, queryset, Membership.Status.REJECTED)

    def _decide(self, request, queryset, status):
        from .services import decide_memberships

        changed, skipped = decide_memberships(queryset, status, actor=request.user)
        if status == Membership.Status.ACTIVE:
            text = ngettext("%(count)d member approved.", "%(count)d members approved.", changed)
        else:
            text = ngettext("%(count)d member rejected.", "%(count)d members rejected.", changed)
        self.message_user(request, text % {"count": changed}, messages.SUCCESS if changed else messages.WARNING)
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d selected membership was not pending and was left as it was.",
                    "%(count)d selected memberships were not pending and were left as they were.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
