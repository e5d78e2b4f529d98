from typing import NamedTuple

from django.apps import apps
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .admin_scoping import TenantScopedAdminMixin, UserChoiceAdminMixin, user_search_fields
from .models import Membership, Tenant
from .scoping import admin_tenant_ids


class Screen(NamedTuple):
    """One screen linked from the tenant's page.

    ``query`` and ``args`` may name ``{tenant}``, ``{config}`` (the tenant's WeCom configuration) and
    ``{review_run}`` (its contact sync waiting for review). A screen whose value is missing is shown
    without a link, saying why, unless it has a ``fallback`` ``(url name, query)`` to link instead.
    Other apps may append plain ``(label, url name, query)`` tuples; they land under "More".
    """

    label: str
    url_name: str
    query: str = ""
    args: tuple = ()
    section: str = ""
    key: str = ""
    fallback: tuple = ()


SECTIONS = (
    ("setup", _("Configuration")),
    ("contacts", _("Contacts (通讯录)")),
    ("messages", _("App messages (应用消息)")),
    ("customers", _("Customer contact (客户联系)")),
    ("approvals", _("Approvals (审批)")),
    ("", _("More")),
)

# Why a screen has no link yet, by the value it lacks.
MISSING_VALUE_REASONS = {
    "config": _("Enter the WeCom configuration first."),
    "review_run": _("No sync is waiting for review."),
}

TENANT = "tenant__id__exact={tenant}"

# The tenant's screens, each one click from its page and filtered to the tenant.
TENANT_SCREENS = [
    Screen(
        _("WeCom configuration (callback URLs)"),
        "admin:wecom_integration_wecomconfig_change",
        args=("{config}",),
        section="setup",
        key="config",
        fallback=("admin:wecom_integration_wecomconfig_add", "tenant={tenant}"),
    ),
    Screen(
        _("Test connection"),
        "admin:wecom_integration_wecomconfig_test_connection",
        args=("{config}",),
        section="setup",
        key="test_connection",
    ),
    Screen(_("App menu"), "admin:wecom_integration_messagelog_menu", args=("{config}",), section="setup", key="menu"),
    Screen(_("Syncs"), "admin:wecom_integration_syncrun_changelist", TENANT, section="contacts", key="syncs"),
    Screen(
        _("Review and confirm the proposed bindings"),
        "admin:wecom_integration_syncrun_review",
        args=("{review_run}",),
        section="contacts",
        key="review",
    ),
    Screen(
        _("Organisation chart"),
        "admin:wecom_integration_department_org_chart",
        "tenant={tenant}",
        section="contacts",
        key="org_chart",
    ),
    Screen(_("Bound WeCom users"), "admin:wecom_integration_binding_changelist", TENANT, section="contacts",
           key="bound"),
    Screen(_("WeCom members"), "admin:wecom_integration_wecomuser_changelist", TENANT, section="contacts",
           key="wecom_users"),
    Screen(
        _("WeCom members not bound"),
        "admin:wecom_integration_wecomuser_changelist",
        TENANT + "&bound=no&removed__exact=0",
        section="contacts",
        key="unbound",
    ),
    Screen(
        _("Pending approvals"),
        "admin:tenants_membership_changelist",
        TENANT + "&status__exact=pending",
        section="contacts",
        key="pending",
    ),
    Screen(_("Members"), "admin:tenants_membership_changelist", TENANT, section="contacts", key="members"),
    Screen(_("Audit log"), "admin:wecom_integration_auditlog_changelist", TENANT, section="contacts", key="audit"),
    Screen(_("Event log"), "admin:wecom_integration_callbackevent_changelist", TENANT, section="messages",
           key="events"),
    Screen(_("Inbox"), "admin:wecom_integration_inboxmessage_changelist", TENANT, section="messages", key="inbox"),
    Screen(_("Message log"), "admin:wecom_integration_messagelog_changelist", TENANT, section="messages",
           key="messages"),
    Screen(
        _("Send a test message"),
        "admin:wecom_integration_messagelog_send_test",
        args=("{config}",),
        section="messages",
        key="send_test",
    ),
    Screen(_("Customers"), "admin:wecom_integration_externalcontact_changelist", TENANT, section="customers",
           key="customers"),
    Screen(_("Customer groups"), "admin:wecom_integration_customergroup_changelist", TENANT, section="customers",
           key="customer_groups"),
    Screen(_("Approvals"), "admin:wecom_integration_approval_changelist", TENANT, section="approvals",
           key="approvals"),
    Screen(_("Submit an approval"), "admin:wecom_integration_approval_submit", "tenant={tenant}", section="approvals",
           key="approval_submit"),
    Screen(_("Joining requests through WeCom approvals"),
           "admin:wecom_integration_membershipapprovalsetting_changelist", TENANT, section="approvals",
           key="approval_setting"),
]


class ScreenLink(NamedTuple):
    label: str
    url: str | None
    reason: str = ""
    key: str = ""


def _reverse(name, args, query, values):
    url = reverse(name, args=[str(arg).format(**values) for arg in args])
    return f"{url}?{query.format(**values)}" if query else url


def tenant_screens(tenant, values=None):
    """The tenant's screens as ``(sections, missing)``.

    ``sections`` is a list of ``(title, [ScreenLink])``, empty sections left out; ``missing`` lists the
    URL names that do not resolve (their app, or that screen, is not installed) — those are skipped.
    ``values`` supplies the placeholders other than ``{tenant}`` (``config``, ``review_run``)."""
    values = {"config": None, "review_run": None, **(values or {}), "tenant": tenant.pk}
    by_section = {key: [] for key, _title in SECTIONS}
    missing, seen = [], set()
    for entry in TENANT_SCREENS:
        screen = entry if isinstance(entry, Screen) else Screen(*entry)
        if (screen.url_name, screen.query, screen.args) in seen:
            continue  # the same screen added twice (e.g. by another app's list)
        seen.add((screen.url_name, screen.query, screen.args))
        lacking = [name for name, value in values.items() if value is None and any(
            "{" + name + "}" in part for part in (screen.query, *screen.args))]
        try:
            if lacking:
                # Only check that the screen exists; there is nothing to link to yet.
                _reverse(screen.url_name, screen.args, screen.query, {**values, **dict.fromkeys(lacking, 0)})
        except NoReverseMatch:
            missing.append(screen.url_name)
            continue
        section = by_section.get(screen.section, by_section[""])
        if lacking and screen.fallback:
            try:
                url = _reverse(screen.fallback[0], (), screen.fallback[1], values)
            except NoReverseMatch:
                missing.append(screen.fallback[0])
                continue
            section.append(ScreenLink(screen.label, url, "", screen.key))
        elif lacking:
            section.append(ScreenLink(screen.label, None, MISSING_VALUE_REASONS.get(lacking[0], ""), screen.key))
        else:
            try:
                url = _reverse(screen.url_name, screen.args, screen.query, values)
            except NoReverseMatch:
                missing.append(screen.url_name)
                continue
            section.append(ScreenLink(screen.label, url, "", screen.key))
    sections = [(title, by_section[key]) for key, title in SECTIONS if by_section[key]]
    return sections, missing


def tenant_links(tenant, values=None):
    """The tenant's linked screens as ``(label, url)`` pairs (those with a link only)."""
    sections, _missing = tenant_screens(tenant, values)
    return [(link.label, link.url) for _title, links in sections for link in links if link.url]


def tenant_page_context(tenant):
    """What the tenant's page and its dashboard show: the figures, the chart and the screens."""
    context = {"dashboard": None, "chart": None, "sync_start_url": None}
    values = {}
    if apps.is_installed("wecom_integration"):
        from wecom_integration.operations.dashboard import bar_chart, tenant_dashboard

        dashboard = tenant_dashboard(tenant)
        values = {
            "config": dashboard.config.pk if dashboard.config else None,
            "review_run": dashboard.review_run.pk if dashboard.review_run else None,
        }
        context.update(dashboard=dashboard, chart=bar_chart(dashboard.hours))
        try:
            context["sync_start_url"] = reverse("admin:wecom_integration_syncrun_start")
            context["last_sync_url"] = (
                reverse("admin:wecom_integration_syncrun_progress", args=[dashboard.last_sync.pk])
                if dashboard.last_sync else None
            )
        except NoReverseMatch:
            context["sync_start_url"] = context["last_sync_url"] = None
    sections, missing = tenant_screens(tenant, values)
    context.update(
        screen_sections=sections,
        missing_screens=missing,
        screen_urls={link.key: link.url for _title, links in sections for link in links if link.key and link.url},
    )
    return context


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    tenant_lookup = ""
    tenant_admin_can_add = False
    list_display = ("id", "name", "code", "created_at", "dashboard_link")
    list_display_links = ("name",)
    search_fields = ("name", "code")
    readonly_fields = ("created_at",)
    change_form_template = "admin/tenants/tenant/change_form.html"

    def get_readonly_fields(self, request, obj=None):
        # The house number names the accounts made for WeCom members (code + userid): a tenant admin who
        # could change it could aim a new account's name at an existing one (issue 16). A superuser sets
        # it once; once the tenant has members it stays as it is.
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and (not request.user.is_superuser or obj.memberships.exists()):
            fields.append("code")
        return fields

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="%s_%s_dashboard" % info,
            ),
        ] + super().get_urls()

    @admin.display(description=_("dashboard"))
    def dashboard_link(self, obj):
        url = reverse("admin:tenants_tenant_dashboard", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Dashboard"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        tenant = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            **tenant_page_context(tenant),
            "dashboard_url": reverse("admin:tenants_tenant_dashboard", args=[tenant.pk]),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def dashboard_view(self, request, object_id):
        """The tenant's dashboard and screens, without the tenant's own form."""
        tenant = self.tenant_admin_view(request, object_id, "view")
        context = {
            **self.admin_site.each_context(request),
            **tenant_page_context(tenant),
            "opts": self.opts,
            "original": tenant,
            "title": _("Dashboard of %(tenant)s") % {"tenant": tenant},
            "tenant": tenant,
        }
        return TemplateResponse(request, "admin/tenants/tenant/dashboard.html", context)


class TenantListFilter(admin.SimpleListFilter):
    """Filter by tenant, offering only the tenants the user administers (a stock ``"tenant"`` filter would
    name every tenant). Its parameter is the one the tenant page's links use."""

    title = _("tenant")
    parameter_name = "tenant__id__exact"

    def lookups(self, request, model_admin):
        ids = admin_tenant_ids(request.user)
        tenants = Tenant.objects.all() if ids is None else Tenant.objects.filter(pk__in=ids)
        return [(str(tenant.pk), str(tenant)) for tenant in tenants.order_by("name")]

    def has_output(self):
        return len(self.lookup_choices) > 1

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            return queryset.filter(tenant_id=int(self.value()))
        except ValueError:
            return queryset.none()


class MembershipInline(UserChoiceAdminMixin, admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "status", "created_at")
    readonly_fields = ("created_at",)
    raw_id_fields = ("user",)


@admin.register(Membership)
class MembershipAdmin(UserChoiceAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "status", "created_at")
    list_filter = ("status", "role", TenantListFilter)
    search_fields = (*user_search_fields("user"), "tenant__name", "tenant__code")
    list_select_related = ("user", "tenant")
    raw_id_fields = ("user",)
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
