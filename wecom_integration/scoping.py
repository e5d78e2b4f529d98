"""The admin mixin that keeps a tenant admin inside their own tenants, for every model and URL.

It works with whatever ``WECOM_TENANT_MODEL`` names and asks the app's adapter which tenants a user
administers (issue 24). ``tenants.admin_scoping`` re-exports it for the ``tenants`` app's own admin.

A superuser sees everything. A tenant admin (staff, active membership with the admin role) sees and
changes only rows whose tenant they administer; another tenant's object answers 403 and is absent from
every list and every choice of a foreign key.

It also holds what the admin of both apps needs to know about the host's user model, which may be a
custom one with no admin registered (``UserChoiceAdminMixin``, ``user_search_fields``).
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, gettext_lazy

from wecom_integration import tenancy
from wecom_integration.client import WeComConfigError, WeComError
from wecom_integration.display import LabelledJSONAdmin
from wecom_integration.extension import get_adapter
from wecom_integration.tenancy import get_tenant_model


class TenantScopedAdminMixin:
    #: The lookup from this model to its Tenant ("" when the model is Tenant itself).
    tenant_lookup = "tenant"
    #: Whether tenant admins may delete rows (superusers always may).
    tenant_admin_can_delete = False
    #: Whether tenant admins may add rows.
    tenant_admin_can_add = True

    # -- scoping -------------------------------------------------------------------------------------------
    def scope(self, request, queryset):
        ids = admin_tenant_ids(request.user)
        if ids is None:
            return queryset
        field = f"{self.tenant_lookup}__in" if self.tenant_lookup else "pk__in"
        return queryset.filter(**{field: ids})

    def get_queryset(self, request):
        return self.scope(request, super().get_queryset(request))

    def tenant_of(self, obj):
        if not self.tenant_lookup:
            return obj.pk
        value = obj
        for part in self.tenant_lookup.split("__"):
            value = getattr(value, part)
        return value.pk

    def allowed_tenant(self, request, tenant_id):
        ids = admin_tenant_ids(request.user)
        return ids is None or tenant_id in ids

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            # Outside the scope: say "forbidden" when it exists elsewhere, "not found" otherwise.
            model = self.model
            field = from_field or model._meta.pk.attname
            try:
                exists = model._default_manager.filter(**{field: object_id}).exists()
            except (ValueError, TypeError):
                exists = False
            if exists:
                raise PermissionDenied
            raise Http404
        return obj

    # -- permissions ---------------------------------------------------------------------------------------
    def _is_tenant_admin(self, request):
        user = request.user
        return user.is_active and user.is_staff and bool(admin_tenant_ids(user))

    def has_module_permission(self, request):
        return request.user.is_superuser or self._is_tenant_admin(request)

    def has_view_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        if not self._is_tenant_admin(request):
            return False
        return obj is None or self.allowed_tenant(request, self.tenant_of(obj))

    def has_change_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        if request.user.is_superuser:
            return True
        return self.tenant_admin_can_add and self._is_tenant_admin(request)

    def has_delete_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        return self.tenant_admin_can_delete and self.has_view_permission(request, obj)

    # -- choices ---------------------------------------------------------------------------------------------
    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        ids = admin_tenant_ids(request.user)
        if ids is not None:
            tenant_model = get_tenant_model()
            if db_field.related_model is tenant_model:
                kwargs["queryset"] = tenant_model._default_manager.filter(pk__in=ids)
            elif db_field.related_model is get_user_model():
                # The members of the tenants they administer (every state but rejected), asked of the adapter.
                adapter = get_adapter(request)
                members = Q(pk__in=[])
                for tenant in tenant_model._default_manager.filter(pk__in=ids):
                    members |= Q(pk__in=adapter.member_user_ids(tenant, tenancy.BINDABLE))
                kwargs["queryset"] = get_user_model().objects.filter(members)
            elif hasattr(db_field.related_model, "tenant"):
                kwargs["queryset"] = db_field.related_model._default_manager.filter(tenant_id__in=ids)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        return filters

    def tenant_admin_view(self, request, object_id, codename="change"):
        """For custom admin URLs: the object if the user may act on it, else 403/404."""
        obj = self.get_object(request, object_id)
        check = self.has_change_permission if codename == "change" else self.has_view_permission
        if not check(request, obj):
            raise PermissionDenied
        return obj


def admin_tenant_ids(user):
    """Ids of the tenants ``user`` administers (the adapter's answer, cached on the user), or None for a
    superuser (every tenant)."""
    if not user.is_authenticated or not user.is_active:
        return set()
    if user.is_superuser:
        return None
    cache = getattr(user, "_admin_tenant_ids", None)
    if cache is None:
        cache = set(get_adapter().admin_tenant_ids(user))
        user._admin_tenant_ids = cache
    return cache


def user_search_fields(*relations):
    """Search lookups for a user foreign key: the user model's ``USERNAME_FIELD`` and its ``first_name`` /
    ``last_name`` where it has them (a host's custom user model may have neither), under each relation.
    ``user_search_fields("user")`` -> ``("user__username", "user__first_name", "user__last_name")``."""
    user_model = get_user_model()
    names = [user_model.USERNAME_FIELD]
    for name in ("first_name", "last_name"):
        try:
            user_model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        names.append(name)
    return tuple(f"{relation}__{name}" for relation in relations for name in names)


class UserChoiceAdminMixin:
    """User foreign keys (``user_choice_fields``, also named in ``raw_id_fields``) are picked by search
    when this admin site's admin of the user model can search it and the request's user may view it
    (autocomplete), else by id (raw id).

    Declaring ``autocomplete_fields`` on a user foreign key fails Django's admin checks (admin.E039 /
    E040) in a host that registers no admin, or one without ``search_fields``, for its user model; a raw
    id needs neither, so it is the declared choice and autocomplete is added per request where it works.
    """

    user_choice_fields = ("user",)

    def users_searchable(self, request):
        user_admin = self.admin_site._registry.get(get_user_model())
        return (
            user_admin is not None
            and bool(user_admin.get_search_fields(request))
            and user_admin.has_view_permission(request)
        )

    def get_autocomplete_fields(self, request):
        fields = tuple(super().get_autocomplete_fields(request))
        if self.users_searchable(request):
            fields += tuple(name for name in self.user_choice_fields if name not in fields)
        return fields


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


class TenantChoiceForm(forms.Form):
    """One of the tenants the user administers that has a WeCom configuration."""

    tenant = forms.ModelChoiceField(queryset=None, label=gettext_lazy("tenant"))

    def __init__(self, *args, tenant_ids=None, **kwargs):
        super().__init__(*args, **kwargs)
        tenants = get_tenant_model()._default_manager.filter(wecom_config__isnull=False)
        if tenant_ids is not None:
            tenants = tenants.filter(pk__in=tenant_ids)
        self.fields["tenant"].queryset = tenants


class MadeInWeComAdminMixin:
    """The admin of a mirror whose changes are made in WeCom first (tags, for one).

    The form makes the change in its ``clean`` (so WeCom's refusal shows on the form and nothing is saved),
    given the acting user as ``actor``; the admin's own save then writes nothing more. A deletion WeCom
    refuses is a message, and nothing is deleted. ``sync/`` reads the mirror from WeCom now, for a tenant
    the user administers (``read_from_wecom``). Subclasses say what WeCom's refusals mean (``refusal``).
    """

    read_title = ""

    def refusal(self, exc) -> str:
        return gettext("WeCom refused the change (errcode %(code)s).") % {"code": exc.errcode}

    def read_from_wecom(self, tenant) -> dict:
        raise NotImplementedError

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        actor = request.user

        class WithActor(form):
            def __init__(self, *args, **kw):
                super().__init__(*args, actor=actor, **kw)

        return WithActor

    def save_model(self, request, obj, form, change):
        pass  # made in WeCom and mirrored by the form's clean

    def save_related(self, request, form, formsets, change):
        pass

    def _changelist_url(self):
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    def _refused(self, request, exc):
        message = exc.admin_message if isinstance(exc, WeComConfigError) else self.refusal(exc)
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(self._changelist_url())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except WeComError as exc:
            return self._refused(request, exc)

    def response_action(self, request, queryset):
        try:
            return super().response_action(request, queryset)
        except WeComError as exc:
            return self._refused(request, exc)

    def get_urls(self):
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}_sync"
        return [path("sync/", self.admin_site.admin_view(self.sync_view), name=name), *super().get_urls()]

    def sync_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = TenantChoiceForm(request.POST or None, tenant_ids=admin_tenant_ids(request.user))
        if request.method == "POST" and form.is_valid():
            try:
                counts = self.read_from_wecom(form.cleaned_data["tenant"])
            except WeComConfigError as exc:
                form.add_error(None, exc.admin_message)
            except WeComError as exc:
                form.add_error(None, self.refusal(exc))
            else:
                self.message_user(
                    request,
                    gettext("%(tags)d tags read from WeCom: %(created)d new, %(updated)d changed, %(deleted)d deleted.")
                    % counts,
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self._changelist_url())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": self.read_title,
            "form": form,
            "submit": gettext("Read tags"),
        }
        return TemplateResponse(request, "admin/wecom_integration/tag_sync.html", context)
