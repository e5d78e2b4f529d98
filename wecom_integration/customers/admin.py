"""The customers (external contacts) and their follow users, as WeCom reported them: read-only."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from wecom_integration import converters  # noqa: F401  (registers the <wecomid:...> path converter)
from wecom_integration.client import WeComConfigError, WeComError
from wecom_integration.customers import tags as tag_services
from wecom_integration.models import CustomerGroup, CustomerGroupMember, CustomerTag, ExternalContact, FollowUser
from wecom_integration.scoping import MadeInWeComAdminMixin, ReadOnlyTenantAdmin, TenantScopedAdminMixin


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
    fields = ("userid", "remark", "tags", "add_time", "state", "visible", "removed", "removed_at")
    readonly_fields = fields

    @admin.display(description=_("tags"))
    def tags(self, obj):
        names = ", ".join(str(t) for t in tag_services.tag_names(obj.contact.tenant_id, obj.tag_ids)) or "—"
        if obj.removed:
            return names
        url = reverse("admin:wecom_integration_externalcontact_tags", args=[obj.contact_id, obj.pk])
        return format_html('{} <a href="{}">{}</a>', names, url, gettext("Edit tags"))


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

    def get_urls(self):
        return [
            path(
                "<int:contact_id>/tags/<int:follow_id>/",
                self.admin_site.admin_view(self.tags_view),
                name="wecom_integration_externalcontact_tags",
            ),
            *super().get_urls(),
        ]

    def tags_view(self, request, contact_id, follow_id):
        """The corp tags a member put on this customer, changed in WeCom (mark_tag) and then here."""
        contact = self.get_object(request, str(contact_id))
        if not self.has_view_permission(request, contact):
            raise PermissionDenied
        follow = contact.follow_users.filter(pk=follow_id, removed=False).first()
        if follow is None:
            raise Http404
        form = MarkTagsForm(request.POST or None, tenant_id=contact.tenant_id, initial={"tags": follow.tag_ids})
        if request.method == "POST" and form.is_valid():
            chosen = [t.tag_id for t in form.cleaned_data["tags"]]
            known = set(CustomerTag.objects.filter(tenant_id=contact.tenant_id).values_list("tag_id", flat=True))
            add = [t for t in chosen if t not in follow.tag_ids]
            remove = [t for t in follow.tag_ids if t not in chosen and t in known]
            try:
                tag_services.mark_customer(follow, add=add, remove=remove, actor=request.user)
            except WeComConfigError as exc:
                form.add_error(None, exc.admin_message)
            except WeComError as exc:
                form.add_error(None, customer_tag_refusal(exc))
            else:
                self.message_user(request, gettext("The customer's tags were changed in WeCom."), messages.SUCCESS)
                change_url = reverse("admin:wecom_integration_externalcontact_change", args=[contact.pk])
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": gettext("Tags %(member)s put on %(customer)s") % {"member": follow.userid, "customer": contact},
            "form": form,
            "submit": gettext("Save in WeCom"),
        }
        return TemplateResponse(request, "admin/wecom_integration/tag_sync.html", context)

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


def customer_tag_refusal(exc: WeComError) -> str:
    known = {
        40071: gettext("WeCom already has a tag of that name in this group."),
        40068: gettext("WeCom no longer has this tag or group; read the tags from WeCom again."),
        84061: gettext("This member no longer has this customer."),
        45056: gettext("WeCom's limit on customer tags was reached."),
        40058: gettext("WeCom refused the name: 1 to 30 characters."),
    }
    return known.get(exc.errcode) or gettext("WeCom refused the change (errcode %(code)s).") % {"code": exc.errcode}


class MarkTagsForm(forms.Form):
    tags = forms.ModelMultipleChoiceField(
        queryset=None, required=False, label=_("tags"), widget=forms.CheckboxSelectMultiple, to_field_name="tag_id"
    )

    def __init__(self, *args, tenant_id, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tags"].queryset = CustomerTag.objects.filter(tenant_id=tenant_id)


class CustomerTagForm(forms.ModelForm):
    names = forms.CharField(
        label=_("tag names"), required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One per line: each becomes a tag of the group (a new group when none has that name)."),
    )
    rename_group = forms.BooleanField(
        label=_("rename the whole group"), required=False,
        help_text=_(
            "Tick to give the group name above to the tag's whole group (WeCom does not move a tag to another group)."
        ),
    )

    class Meta:
        model = CustomerTag
        fields = ("tenant", "group_name", "name")

    def __init__(self, *args, actor=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor = actor
        if self.instance.pk:
            self.fields["tenant"].disabled = True
            self.fields["names"].widget = forms.HiddenInput()
        else:
            self.fields["name"].required = False

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            if self.instance.pk is None:
                tenant = data["tenant"]
                names = [n.strip() for n in (data.get("names") or "").splitlines() if n.strip()]
                if data.get("name"):
                    names.insert(0, data["name"].strip())
                if not names:
                    raise forms.ValidationError(gettext("Name at least one tag."))
                group = CustomerTag.objects.filter(tenant=tenant, group_name=data["group_name"]).first()
                ids = tag_services.add_corp_tags(tenant, names, group_id=group.group_id if group else "",
                                                 group_name=data["group_name"], actor=self.actor)
                self.instance = CustomerTag.objects.get(tenant=tenant, tag_id=ids[0])
            else:
                stored = CustomerTag.objects.get(pk=self.instance.pk)
                if data["group_name"] != stored.group_name:
                    if not data.get("rename_group"):
                        self.add_error(
                            "rename_group", gettext("A tag cannot move to another group; tick to rename the group.")
                        )
                        return data
                    tag_services.rename_corp_tag(stored, data["group_name"], group=True, actor=self.actor)
                if data["name"] != stored.name:
                    tag_services.rename_corp_tag(stored, data["name"], actor=self.actor)
                self.instance.refresh_from_db()
        except WeComConfigError as exc:
            raise forms.ValidationError(exc.admin_message) from exc
        except WeComError as exc:
            raise forms.ValidationError(customer_tag_refusal(exc)) from exc
        return data


@admin.register(CustomerTag)
class CustomerTagAdmin(MadeInWeComAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """The corp's customer tags (企业客户标签) in their groups; a change here is made in WeCom."""

    form = CustomerTagForm
    list_display = ("group_name", "name", "tag_id", "order", "created", "tenant")
    list_display_links = ("name",)
    list_filter = ("group_name",)
    search_fields = ("name", "group_name", "=tag_id")
    list_select_related = ("tenant",)
    readonly_fields = ("tag_id", "group_id", "order", "created", "updated_at")
    tenant_admin_can_delete = True
    change_list_template = "admin/wecom_integration/customertag/change_list.html"
    read_title = _("Read customer tags from WeCom")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "group_name", "name", "names")
        return ("tenant", "group_name", "rename_group", "name", "tag_id", "group_id", "order", "created", "updated_at")

    def delete_model(self, request, obj):
        tag_services.delete_corp_tags(obj.tenant_id, [obj], actor=request.user)

    def delete_queryset(self, request, queryset):
        by_tenant = {}
        for tag in queryset:
            by_tenant.setdefault(tag.tenant_id, []).append(tag)
        for tenant_id, tags in by_tenant.items():
            tag_services.delete_corp_tags(tenant_id, tags, actor=request.user)

    def refusal(self, exc):
        return customer_tag_refusal(exc)

    def read_from_wecom(self, tenant):
        """Read the corp's customer tag library now (the customer sync reads it too)."""
        return tag_services.sync_corp_tags(tenant)
