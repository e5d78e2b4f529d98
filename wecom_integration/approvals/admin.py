"""Approvals in the admin: the tenant's approvals with filters and a timeline of each, submitting one for
a member (the template's controls as a form), and the tenant's choice of joining requests decided in WeCom."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from wecom_integration.approvals import mirror, services
from wecom_integration.approvals.models import Approval, MembershipApprovalSetting
from wecom_integration.client import WeComError
from wecom_integration.models import WeComConfig, WeComUser
from wecom_integration.scoping import ReadOnlyTenantAdmin, TenantScopedAdminMixin, admin_tenant_ids
from wecom_integration.tenancy import get_tenant_model

STEP_STATUS = {
    1: gettext_lazy("waiting"),
    2: gettext_lazy("approved"),
    3: gettext_lazy("rejected"),
    4: gettext_lazy("transferred"),
    5: gettext_lazy("added an approver"),
    6: gettext_lazy("added an approver after"),
    7: gettext_lazy("decided by another"),
}


class TemplateFilter(admin.SimpleListFilter):
    title = gettext_lazy("template")
    parameter_name = "template_id"

    def lookups(self, request, model_admin):
        rows = model_admin.get_queryset(request).values_list("template_id", "sp_name").distinct()
        seen = {}
        for template_id, name in rows:
            if template_id and template_id not in seen:
                seen[template_id] = name or template_id
        return sorted(seen.items(), key=lambda item: item[1])

    def queryset(self, request, queryset):
        return queryset.filter(template_id=self.value()) if self.value() else queryset


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyTenantAdmin):
    list_display = ("sp_no", "sp_name", "applicant", "status", "apply_time", "purpose", "subject_user", "tenant")
    list_filter = ("status", TemplateFilter, "purpose")
    search_fields = ("sp_no", "sp_name", "applicant", "template_id")
    list_select_related = ("tenant", "subject_user")
    fields = ("sp_no", "sp_name", "status", "applicant", "apply_time", "purpose", "subject_user", "settled",
              "template_id", "tenant", "updated_at")
    readonly_fields = fields
    change_form_template = "admin/wecom_integration/approval/change_form.html"
    change_list_template = "admin/wecom_integration/approval/change_list.html"

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [path("submit/", view(self.submit_view), name="%s_%s_submit" % info)] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        approval = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if approval is not None:
            entries = []
            for entry in mirror.timeline(approval):
                label = {"submitted": _("submitted"), "comment": _("commented"), "waiting": _("to decide")}.get(
                    entry["what"]
                ) or STEP_STATUS.get(entry.get("status"), str(entry.get("status")))
                entries.append({**entry, "label": label})
            extra.update(
                timeline=entries,
                contents=[_content_row(item) for item in approval.contents],
                notifyers=approval.notifyers,
            )
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request, extra_context=None):
        extra = dict(extra_context or {})
        extra["submit_url"] = reverse("admin:wecom_integration_approval_submit")
        return super().changelist_view(request, extra)

    # Submitting ------------------------------------------------------------------------------------------

    def submit_view(self, request):
        """Step 1 chooses the tenant, the template and the applicant; step 2 shows the template's controls."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        start = StartForm(request.POST or request.GET or None, tenant_ids=admin_tenant_ids(request.user))
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": _("Submit an approval"),
                   "start": start}
        if not start.is_valid():
            return TemplateResponse(request, "admin/wecom_integration/approval/submit.html", context)
        tenant = start.cleaned_data["tenant"]
        config = WeComConfig.objects.filter(tenant=tenant).first()
        if config is None:
            start.add_error("tenant", _("WeCom is not configured for this tenant."))
            return TemplateResponse(request, "admin/wecom_integration/approval/submit.html", context)
        template_id = start.cleaned_data["template_id"]
        try:
            template = services.get_template(config, template_id, refresh=request.method == "GET")
        except WeComError as exc:
            start.add_error("template_id", _("WeCom could not give this template: %(error)s") % {"error": exc.errcode})
            return TemplateResponse(request, "admin/wecom_integration/approval/submit.html", context)
        controls_form = ControlsForm(services.controls(template), request.POST if "controls" in request.POST else None)
        context.update(template_name=services.template_name(template), controls=controls_form)
        if "controls" in request.POST and controls_form.is_valid():
            submission = services.Submission(
                creator=start.cleaned_data["creator"],
                template_id=template_id,
                contents=controls_form.contents(),
                approvers=start.cleaned_data["approver_list"],
                approver_attr=int(start.cleaned_data["approver_attr"]),
            )
            try:
                approval = services.submit(config, submission)
            except services.ApprovalInputError as exc:
                for key, message in exc.errors.items():
                    field = key if key in controls_form.fields else None
                    controls_form.add_error(field, message)
            except WeComError as exc:
                refused = _("WeCom refused the approval (errcode %(code)s).") % {"code": exc.errcode}
                controls_form.add_error(None, refused)
            else:
                self.message_user(request, _("Approval %(sp_no)s submitted.") % {"sp_no": approval.sp_no},
                                  messages.SUCCESS)
                return redirect(reverse("admin:wecom_integration_approval_change", args=[approval.pk]))
        return TemplateResponse(request, "admin/wecom_integration/approval/submit.html", context)


def _content_row(item: dict) -> dict:
    value = item.get("value") or {}
    shown = value.get("text") or value.get("new_number") or value.get("new_money")
    if shown is None and value.get("date"):
        stamp = int(value["date"].get("s_timestamp") or 0)
        shown = dt.datetime.fromtimestamp(stamp, tz=dt.UTC).date().isoformat() if stamp else ""
    if shown is None and value.get("selector"):
        shown = ", ".join(option.get("key", "") for option in value["selector"].get("options", []))
    if shown is None and value.get("files"):
        shown = ", ".join(file.get("file_id", "") for file in value["files"])
    shown = shown if shown is not None else value
    return {"id": item.get("id", ""), "control": item.get("control", ""), "value": shown}


class StartForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=None, label=gettext_lazy("tenant"))
    template_id = forms.CharField(label=gettext_lazy("approval template id"), max_length=128)
    creator = forms.CharField(label=gettext_lazy("applicant (WeCom userid)"), max_length=64,
                              help_text=gettext_lazy("The member the approval is submitted for."))
    approvers = forms.CharField(
        label=gettext_lazy("approvers"), required=False, max_length=1024,
        help_text=gettext_lazy("WeCom userids separated by commas; empty: the template's own process."),
    )
    approver_attr = forms.ChoiceField(label=gettext_lazy("how approvers decide"),
                                      choices=MembershipApprovalSetting.ApproverAttr.choices, initial=1)

    def __init__(self, *args, tenant_ids=None, **kwargs):
        super().__init__(*args, **kwargs)
        tenants = get_tenant_model()._default_manager.all()
        if tenant_ids is not None:
            tenants = tenants.filter(pk__in=tenant_ids)
        self.fields["tenant"].queryset = tenants

    def clean(self):
        data = super().clean()
        data["approver_list"] = [item.strip() for item in (data.get("approvers") or "").split(",") if item.strip()]
        tenant, creator = data.get("tenant"), data.get("creator")
        if tenant is not None and creator and not WeComUser.objects.filter(
            tenant=tenant, userid=creator, removed=False
        ).exists():
            self.add_error("creator", _("Not a WeCom member of this tenant."))
        return data


class ControlsForm(forms.Form):
    """One field per control of the template, turned back into WeCom's ``apply_data.contents``."""

    controls = forms.CharField(widget=forms.HiddenInput, initial="1", required=False)

    def __init__(self, controls, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.controls = controls
        for control in controls:
            kind, label, required = control["control"], control["title"] or control["id"], control["required"]
            if kind == "Textarea":
                field = forms.CharField(label=label, required=required, widget=forms.Textarea(attrs={"rows": 3}))
            elif kind in ("Number", "Money"):
                field = forms.DecimalField(label=label, required=required)
            elif kind == "Date":
                field = forms.DateField(label=label, required=required, widget=forms.DateInput(attrs={"type": "date"}))
            elif kind == "Text":
                field = forms.CharField(label=label, required=required)
            else:
                # Selectors, files, contacts …: not filled from the admin (the API takes any control).
                field = forms.CharField(label=label, required=False, disabled=True,
                                        help_text=_("A %(kind)s control: submit it through the API.") % {"kind": kind})
            self.fields[f"c_{control['id']}"] = field

    def contents(self) -> list[dict]:
        items = []
        for control in self.controls:
            value = self.cleaned_data.get(f"c_{control['id']}")
            if value in (None, ""):
                continue
            kind = control["control"]
            if kind in ("Text", "Textarea"):
                wecom = {"text": value}
            elif kind == "Number":
                wecom = {"new_number": str(value)}
            elif kind == "Money":
                wecom = {"new_money": str(value)}
            elif kind == "Date":
                stamp = int(dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC).timestamp())
                wecom = {"date": {"type": "day", "s_timestamp": str(stamp)}}
            else:
                continue
            items.append({"control": kind, "id": control["id"], "value": wecom})
        return items


class MembershipApprovalSettingForm(forms.ModelForm):
    class Meta:
        model = MembershipApprovalSetting
        fields = ("tenant", "enabled", "template_id", "approvers", "approver_attr", "notifyers")

    def clean(self):
        data = super().clean()
        tenant, template_id = data.get("tenant"), data.get("template_id")
        if not data.get("approvers", "").strip():
            self.add_error("approvers", _("Name at least one approver."))
        if tenant is None or not template_id:
            return data
        config = WeComConfig.objects.filter(tenant=tenant).first()
        if config is None:
            raise forms.ValidationError(_("Configure WeCom for this tenant first."))
        # The template must take a joining request: its required controls all text.
        try:
            template = services.get_template(config, template_id, refresh=True)
            services.text_contents(template, "check")
        except services.ApprovalInputError as exc:
            self.add_error("template_id", _("This template needs controls a joining request cannot fill: %(ids)s")
                           % {"ids": ", ".join(exc.errors)})
        except WeComError as exc:
            self.add_error("template_id", _("WeCom could not give this template (errcode %(code)s).")
                           % {"code": exc.errcode})
        return data


@admin.register(MembershipApprovalSetting)
class MembershipApprovalSettingAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = MembershipApprovalSettingForm
    list_display = ("tenant", "enabled", "template_id", "approvers", "approver_attr", "updated_at")
    tenant_admin_can_delete = True
