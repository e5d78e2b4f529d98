"""Contact tags (通讯录标签) in the admin: the mirror listed, and tags created, renamed, deleted and given or
relieved of members and departments, each change made in WeCom first (directory/tags.py).

A change WeCom refuses (a taken name, a tag another app owns, members it does not know) is shown on the form
and changes nothing; members WeCom reported invalid are named after the save.
"""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from wecom_integration.client import WeComConfigError, WeComError
from wecom_integration.directory import tags as tag_services
from wecom_integration.models import ContactTag, WeComConfig, WeComUser
from wecom_integration.scoping import MadeInWeComAdminMixin, TenantScopedAdminMixin

PREVIEW = 200


def _lines(value: str) -> list[str]:
    return [item.strip() for chunk in (value or "").splitlines() for item in chunk.split(",") if item.strip()]


def wecom_refusal(exc: WeComError) -> str:
    """What to tell the admin when WeCom refuses a change of tags."""
    known = {
        40071: _("WeCom already has a tag of that name."),
        40068: _("WeCom does not know this tag (deleted there?); sync the contacts."),
        60011: _(
            "WeCom allows this secret to change only the tags its app created. Fill in the contact-sync secret "
            "(通讯录同步 Secret) to manage every tag."
        ),
        48009: _("Under WeCom's rules since 2022 the contact-sync secret may not do this here."),
        45056: _("WeCom's limit on tags was reached (3,000 tags in a corp, 30,000 members in a tag)."),
        40058: _("WeCom refused the name: 1 to 32 characters."),
    }
    return known.get(exc.errcode) or _("WeCom refused the change (errcode %(code)s).") % {"code": exc.errcode}


class ContactTagForm(forms.ModelForm):
    add_users = forms.CharField(
        label=gettext_lazy("add members"), required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("WeCom userids, one per line or separated by commas."),
    )
    remove_users = forms.CharField(
        label=gettext_lazy("remove members"), required=False, widget=forms.Textarea(attrs={"rows": 2}),
    )
    add_departments = forms.CharField(label=gettext_lazy("add departments"), required=False,
                                      help_text=gettext_lazy("Department ids separated by commas."))
    remove_departments = forms.CharField(label=gettext_lazy("remove departments"), required=False)

    class Meta:
        model = ContactTag
        fields = ("tenant", "name")

    def __init__(self, *args, actor=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor = actor
        self.invalid = ([], [])
        if self.instance.pk:
            self.fields["tenant"].disabled = True

    def _ids(self, name):
        values = _lines(self.cleaned_data.get(name))
        bad = [v for v in values if not v.isdigit()]
        if bad:
            self.add_error(name, _("Department ids are numbers: %(ids)s") % {"ids": ", ".join(bad)})
        return [int(v) for v in values if v.isdigit()]

    def clean(self):
        data = super().clean()
        tenant, name = data.get("tenant") or self.instance.tenant_id and self.instance.tenant, data.get("name")
        add_parties, remove_parties = self._ids("add_departments"), self._ids("remove_departments")
        if self.errors or tenant is None or not name:
            return data
        if not WeComConfig.objects.filter(tenant=tenant).exists():
            raise forms.ValidationError(_("Configure WeCom for this tenant first."))
        # The change is made in WeCom here, where a refusal can still be shown on the form.
        try:
            if self.instance.pk is None:
                self.instance = tag_services.create_tag(tenant, name, actor=self.actor)
            elif name != ContactTag.objects.get(pk=self.instance.pk).name:
                tag_services.rename_tag(self.instance, name, actor=self.actor)
            add_users, remove_users = _lines(data.get("add_users")), _lines(data.get("remove_users"))
            if add_users or remove_users or add_parties or remove_parties:
                change = tag_services.change_tag_members(
                    self.instance, add_users=add_users, remove_users=remove_users, add_parties=add_parties,
                    remove_parties=remove_parties, actor=self.actor,
                )
                self.instance = change.tag
                self.invalid = (change.invalid_users, change.invalid_parties)
        except WeComConfigError as exc:
            raise forms.ValidationError(exc.admin_message) from exc
        except WeComError as exc:
            raise forms.ValidationError(wecom_refusal(exc)) from exc
        return data


@admin.register(ContactTag)
class ContactTagAdmin(MadeInWeComAdminMixin, TenantScopedAdminMixin, admin.ModelAdmin):
    """The corp's contact tags, as WeCom has them; a change here is made in WeCom."""

    form = ContactTagForm
    list_display = ("name", "tagid", "member_count", "departments", "tenant", "updated_at")
    search_fields = ("name", "=tagid", "members__userid")
    list_select_related = ("tenant",)
    readonly_fields = ("tagid", "departments", "members_preview", "updated_at")
    tenant_admin_can_delete = True
    change_list_template = "admin/wecom_integration/contacttag/change_list.html"
    read_title = gettext_lazy("Read contact tags from WeCom")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("tenant", "name", "add_users", "add_departments")
        return ("tenant", "name", "tagid", "departments", "members_preview", "add_users", "remove_users",
                "add_departments", "remove_departments", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).distinct()

    @admin.display(description=gettext_lazy("members"))
    def member_count(self, obj):
        return obj.members.count()

    @admin.display(description=gettext_lazy("members"))
    def members_preview(self, obj):
        userids = list(obj.members.order_by("userid").values_list("userid", flat=True)[:PREVIEW])
        members = WeComUser.objects.filter(tenant_id=obj.tenant_id, userid__in=userids)
        names = dict(members.values_list("userid", "name"))
        total = obj.members.count()
        shown = ", ".join(f"{names.get(u) or '?'} ({u})" for u in userids)
        if total > PREVIEW:
            return _("%(shown)s … and %(more)d more") % {"shown": shown, "more": total - PREVIEW}
        return shown or "—"

    def save_model(self, request, obj, form, change):
        """Saved by the form's clean, in WeCom and then in the mirror; say what WeCom refused."""
        invalid_users, invalid_parties = form.invalid
        if invalid_users or invalid_parties:
            self.message_user(
                request,
                _("WeCom did not take these members: %(users)s; departments: %(parties)s.")
                % {"users": ", ".join(invalid_users) or "—", "parties": ", ".join(map(str, invalid_parties)) or "—"},
                messages.WARNING,
            )

    def delete_model(self, request, obj):
        tag_services.delete_tag(obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for tag in queryset:
            tag_services.delete_tag(tag, actor=request.user)

    def refusal(self, exc):
        return wecom_refusal(exc)

    def read_from_wecom(self, tenant):
        """Read the corp's tags now (the contact sync reads them too)."""
        return tag_services.sync_contact_tags(tenant)
