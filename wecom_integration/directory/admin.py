"""The directory screens: departments (with the org chart), WeCom members, the bound users, the audit
log. The syncs' screens are in ``admin_sync``.

Everything a tenant admin sees here is scoped to the tenants they administer (TenantScopedAdminMixin).
The mirror is WeCom's: departments and members are read-only here, changed only by the sync and the
contact callbacks. Bindings change only through ``services.bindings`` so that each change is audited.
"""

from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Subquery
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from wecom_integration.directory import bindings
from wecom_integration.display import LabelledJSONAdmin
from wecom_integration.models import AuditLog, Binding, Department, WeComUser
from wecom_integration.scoping import TenantScopedAdminMixin, admin_tenant_ids, user_search_fields
from wecom_integration.tenancy import get_tenant_model, tenants_ordered

REVIEW_PAGE_SIZE = 100
SEARCH_LIMIT = 50


class TenantFilter(admin.SimpleListFilter):
    """The tenant, offering only the tenants the admin administers (so no other tenant's name shows).
    Its parameter is the one the tenant page's links use (``tenant__id__exact``)."""

    title = _("tenant")
    parameter_name = "tenant__id__exact"

    def lookups(self, request, model_admin):
        return [(str(t.pk), str(t)) for t in tenant_choices(request)]

    def has_output(self):
        return len(self.lookup_choices) > 1

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        try:
            tenant_id = int(value)
        except ValueError:
            return queryset.none()
        return queryset.filter(tenant_id=tenant_id)


class MirrorAdmin(LabelledJSONAdmin, TenantScopedAdminMixin, admin.ModelAdmin):
    """Records shown, never added, edited or deleted by hand: WeCom's mirror, the audit log, the runs."""

    tenant_admin_can_add = False
    list_filter = (TenantFilter,)

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def admin_tenant(request, tenant_id=None):
    """The tenant an admin screen is about: the one asked for if the user administers it, or their
    only tenant; None when they must choose."""
    ids = admin_tenant_ids(request.user)
    if tenant_id not in (None, ""):
        try:
            tenant_id = int(tenant_id)
        except (TypeError, ValueError):
            raise PermissionDenied from None
        if ids is not None and tenant_id not in ids:
            raise PermissionDenied
        return get_object_or_404(get_tenant_model(), pk=tenant_id)
    if ids is not None and len(ids) == 1:
        return get_tenant_model()._default_manager.get(pk=next(iter(ids)))
    return None


def tenant_choices(request):
    ids = admin_tenant_ids(request.user)
    manager = get_tenant_model()._default_manager
    return tenants_ordered(manager.all() if ids is None else manager.filter(pk__in=ids))


# Departments and the org chart ---------------------------------------------------------------------


def org_tree(tenant):
    """The tenant's departments as a flat list of tokens for the org-chart template: ``open`` (a
    department with sub-departments), ``leaf`` and ``close``, each with the head counts ``direct``
    (members placed directly in it) and ``total`` (distinct members in its whole subtree)."""
    departments = {
        d["dept_id"]: d
        for d in Department.objects.filter(tenant=tenant, removed=False).values("dept_id", "name", "parent_id", "order")
    }
    children = defaultdict(list)
    for dept in departments.values():
        children[dept["parent_id"]].append(dept["dept_id"])
    for ids in children.values():
        # WeCom's order: a larger ``order`` first.
        ids.sort(key=lambda i: (-departments[i]["order"], i))
    direct = defaultdict(int)
    total = defaultdict(int)
    ancestors_cache = {}

    def ancestors(dept_id):
        if dept_id not in ancestors_cache:
            chain, seen, current = [], set(), dept_id
            while current in departments and current not in seen:  # a cycle must not hang the page
                seen.add(current)
                chain.append(current)
                current = departments[current]["parent_id"]
            ancestors_cache[dept_id] = chain
        return ancestors_cache[dept_id]

    members = WeComUser.objects.filter(tenant=tenant, removed=False).exclude(status=WeComUser.Status.QUIT)
    for dept_ids in members.values_list("departments", flat=True).iterator(chunk_size=5000):
        reached = set()
        for dept_id in dept_ids or ():
            direct[dept_id] += 1
            reached.update(ancestors(dept_id))
        for dept_id in reached:
            total[dept_id] += 1

    roots = [d for d in departments if departments[d]["parent_id"] not in departments]
    roots.sort(key=lambda i: (-departments[i]["order"], i))
    tokens = []

    def walk(dept_id, depth):
        dept = departments[dept_id]
        node = {"id": dept_id, "name": dept["name"] or f"#{dept_id}", "direct": direct[dept_id],
                "total": total[dept_id], "depth": depth}
        if children.get(dept_id):
            tokens.append({"kind": "open", **node})
            for child in children[dept_id]:
                walk(child, depth + 1)
            tokens.append({"kind": "close"})
        else:
            tokens.append({"kind": "leaf", **node})

    for root in roots:
        walk(root, 0)
    return tokens


@admin.register(Department)
class DepartmentAdmin(MirrorAdmin):
    list_display = ("name", "dept_id", "parent_id", "order", "tenant", "removed", "updated_at")
    list_filter = (TenantFilter, "removed")
    search_fields = ("name", "name_en")
    list_select_related = ("tenant",)
    change_list_template = "admin/wecom_integration/department/change_list.html"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("org-chart/", self.admin_site.admin_view(self.org_chart_view), name="%s_%s_org_chart" % info),
        ] + super().get_urls()

    def org_chart_view(self, request):
        """The tenant's department tree, collapsible, with head counts."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        tenant = admin_tenant(request, request.GET.get("tenant"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Organisation chart"),
            "tenant": tenant,
            "tenants": tenant_choices(request) if tenant is None else (),
            "tree": org_tree(tenant) if tenant is not None else (),
        }
        return TemplateResponse(request, "admin/wecom_integration/department/org_chart.html", context)


# WeCom members -------------------------------------------------------------------------------------


class BoundFilter(admin.SimpleListFilter):
    title = _("bound")
    parameter_name = "bound"

    def lookups(self, request, model_admin):
        return [("yes", _("Bound")), ("no", _("Not bound"))]

    def queryset(self, request, queryset):
        bound = Binding.objects.filter(wecom_user=OuterRef("pk"))
        if self.value() == "yes":
            return queryset.filter(Exists(bound))
        if self.value() == "no":
            return queryset.exclude(Exists(bound))
        return queryset


class ConsentFilter(admin.SimpleListFilter):
    """Members who allowed the app to read their mobile, email and avatar (snsapi_privateinfo sign-in)."""

    title = _("shared private information")
    parameter_name = "consented"

    def lookups(self, request, model_admin):
        return (("yes", _("Yes")), ("no", _("No")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(private_info_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(private_info_at__isnull=True)
        return queryset


@admin.register(WeComUser)
class WeComUserAdmin(MirrorAdmin):
    list_display = (
        "userid",
        "name",
        "position",
        "main_department",
        "status",
        "removed",
        "consented",
        "bound_to",
        "tenant",
    )
    list_filter = (TenantFilter, "status", "removed", BoundFilter, ConsentFilter)
    # Not mobile or email: they are encrypted at rest, so the database cannot search them.
    search_fields = ("userid", "name")
    list_select_related = ("tenant",)
    readonly_fields = ("fingerprint", "last_event_time", "private_info_at", "updated_at")

    @admin.display(description=_("shared private information"), boolean=True, ordering="private_info_at")
    def consented(self, obj):
        return obj.private_info_at is not None

    def get_queryset(self, request):
        User = get_user_model()
        bound = Binding.objects.filter(wecom_user=OuterRef("pk")).values(f"user__{User.USERNAME_FIELD}")[:1]
        return super().get_queryset(request).annotate(bound_username=Subquery(bound))

    @admin.display(description=_("bound to"), ordering="bound_username")
    def bound_to(self, obj):
        return obj.bound_username or "—"


# Bound users ---------------------------------------------------------------------------------------


class ManualBindForm(forms.ModelForm):
    """Bind any account of the tenant to any of its WeCom members (seed 001: manual association)."""

    #: Who binds (set per request by BindingAdmin.get_form): a tenant admin may not bind a staff account.
    actor = None

    class Meta:
        model = Binding
        fields = ("tenant", "user", "wecom_user")

    def clean(self):
        data = super().clean()
        tenant, user, wecom_user = data.get("tenant"), data.get("user"), data.get("wecom_user")
        if tenant and user and wecom_user:
            try:
                bindings.check_bindable(tenant, user, wecom_user, actor=self.actor, source="admin")
            except bindings.BindingError as exc:
                raise forms.ValidationError(exc.message, code=exc.code) from None
        return data

    def validate_unique(self):
        # check_bindable says which side is taken, in words an admin understands.
        pass


@admin.register(Binding)
class BindingAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Seed 001's "Bound Enterprise WeChat Users": search, filter, Remove (unbind, keep the user) and
    manual binding (Add)."""

    form = ManualBindForm
    list_display = ("username", "full_name", "wecom_userid", "wecom_name", "is_active", "tenant", "created_at")
    list_display_links = ("username",)
    list_filter = (TenantFilter, "is_active")
    search_fields = (*user_search_fields("user"), "wecom_user__userid", "wecom_user__name")
    list_select_related = ("user", "wecom_user", "tenant")
    autocomplete_fields = ("wecom_user",)
    actions = ("remove_bindings",)
    change_list_template = "admin/wecom_integration/binding/change_list.html"

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Deleting rows would skip the audit log: Remove does the same, recorded.
        actions.pop("delete_selected", None)
        return actions

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ("tenant", "user", "wecom_user", "is_active", "created_at", "updated_at")
        return ()

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def changelist_view(self, request, extra_context=None):
        extra_context = {"title": _("Bound WeCom users"), **(extra_context or {})}
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("username"), ordering="user__username")
    def username(self, obj):
        return obj.user.get_username()

    @admin.display(description=_("name"))
    def full_name(self, obj):
        return obj.user.get_full_name()

    @admin.display(description=_("WeCom userid"), ordering="wecom_user__userid")
    def wecom_userid(self, obj):
        return obj.wecom_user.userid

    @admin.display(description=_("WeCom name"), ordering="wecom_user__name")
    def wecom_name(self, obj):
        return obj.wecom_user.name

    def save_model(self, request, obj, form, change):
        if change:
            return  # every field is read-only once bound
        try:
            binding = bindings.bind(obj.tenant, obj.user, obj.wecom_user, actor=request.user, source="admin")
        except bindings.BindingError as exc:
            # The form checked already; a concurrent bind can still win the race.
            raise PermissionDenied(exc.message) from None
        obj.pk = binding.pk
        obj.created_at = binding.created_at

    def delete_model(self, request, obj):
        bindings.unbind(obj, actor=request.user, source="admin")

    def delete_queryset(self, request, queryset):
        bindings.unbind_many(queryset, actor=request.user, source="admin")

    @admin.action(description=_("Remove (unbind, keep the user)"))
    def remove_bindings(self, request, queryset):
        count = bindings.unbind_many(queryset, actor=request.user, source="admin")
        self.message_user(
            request,
            ngettext(
                "%(count)d binding removed; the user was kept.",
                "%(count)d bindings removed; the users were kept.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


# Audit log -----------------------------------------------------------------------------------------


@admin.register(AuditLog)
class AuditLogAdmin(MirrorAdmin):
    list_display = ("created_at", "action", "actor", "target_user", "wecom_userid", "detail_labelled", "tenant")
    list_filter = (TenantFilter, "action", "created_at")
    search_fields = ("wecom_userid", *user_search_fields("target_user", "actor"))
    list_select_related = ("tenant", "actor", "target_user")
    date_hierarchy = "created_at"


# Syncs ---------------------------------------------------------------------------------------------
