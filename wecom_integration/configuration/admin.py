"""The tenant's WeCom configuration: write-only secrets, the callback URLs to paste, Test connection."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from wecom_integration.callbacks import attempts as callback_attempts
from wecom_integration.configuration.forms import WeComConfigForm
from wecom_integration.configuration.services import callback_urls
from wecom_integration.login.services import homepage_urls, verification_page_urls
from wecom_integration.models import (
    DOMAIN_FILE_MAX_BYTES,
    DomainVerificationFile,
    WeComConfig,
    validate_domain_file_name,
)
from wecom_integration.scoping import TenantScopedAdminMixin
from wecom_integration.tenancy import tenant_search_fields


@admin.register(WeComConfig)
class WeComConfigAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = WeComConfigForm
    list_display = ("tenant", "corp_id", "agent_id", "enabled", "updated_at")
    list_filter = ("enabled",)

    def get_search_fields(self, request):
        # The tenant's name and code where WECOM_TENANT_MODEL has them (a host's model may not).
        return (*tenant_search_fields(), "corp_id")

    list_select_related = ("tenant",)
    change_form_template = "admin/wecom_integration/wecomconfig/change_form.html"
    fieldsets = (
        (None, {"fields": ("tenant", "corp_id", "agent_id", "secret", "enabled")}),
        (
            _("Contacts (通讯录)"),
            {"fields": ("contact_secret", "contact_token", "contact_aes_key")},
        ),
        (
            _("Customer contact (客户联系)"),
            {"fields": ("customer_credential", "customer_secret", "customer_token", "customer_aes_key",
                        "customer_member_link")},
        ),
        (_("Receiving app messages (接收消息)"), {"fields": ("app_token", "app_aes_key", "auto_reply")}),
        (_("Approvals (审批)"), {"fields": ("approval_secret",), "classes": ("collapse",)}),
        (
            _("Session archive (会话存档)"),
            {"fields": ("archive_secret", "archive_private_key"), "classes": ("collapse",)},
        ),
        (
            _("Sign-in and sync"),
            {
                "fields": (
                    "allow_signup",
                    "members_may_send",
                    "two_step_verification",
                    "two_step_credential",
                    "private_info_scope",
                    "periodic_sync",
                    "sync_interval_minutes",
                )
            },
        ),
        (_("Network"), {"fields": ("proxy_url",), "classes": ("collapse",)}),
    )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and not request.user.is_superuser:
            return ("tenant",)
        return ()

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="%s_%s_test_connection" % info,
            ),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        config = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "callback_urls": callback_urls(config.tenant_id, request),
            "callback_attempts": callback_attempts.summary(config.tenant_id),
            "test_connection_url": reverse(
                "admin:wecom_integration_wecomconfig_test_connection", args=[config.pk]
            ),
            "config_links": config_links(config),
            "homepage_urls": homepage_urls(config, request),
            "verification_urls": verification_page_urls(config, request) if config.two_step_verification else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def test_connection_view(self, request, object_id):
        """Fetch a token for every secret entered and show, per secret, ok or what to fix."""
        from wecom_integration.client.diagnostics import test_connection

        config = self.tenant_admin_view(request, object_id, "change")
        results = test_connection(config) if request.method == "POST" else None
        if results is not None:
            failed = [r for r in results if r.ok is False]
            messages.add_message(
                request,
                messages.ERROR if failed else messages.SUCCESS,
                _("Connection test finished with problems.") if failed else _("Every secret works."),
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": config,
            "title": _("Test connection"),
            "results": results,
            "callback_urls": callback_urls(config.tenant_id, request),
        }
        return TemplateResponse(request, "admin/wecom_integration/wecomconfig/test_connection.html", context)


def config_links(config):
    """The configuration's own screens, one click from its page."""
    return [
        (_("Send a test message"), reverse("admin:wecom_integration_messagelog_send_test", args=[config.pk])),
        (_("App menu"), reverse("admin:wecom_integration_messagelog_menu", args=[config.pk])),
    ]


class DomainVerificationFileForm(forms.ModelForm):
    """The upload: the file's own name and bytes become the row; both are checked before saving."""

    upload = forms.FileField(
        label=_("file from WeCom"),
        help_text=_(
            "The WW_verify_….txt file WeCom offers under 可信域名 → 申请校验域名. It is served at /<its name>."
        ),
    )

    class Meta:
        model = DomainVerificationFile
        fields = ("tenant",)

    def clean_upload(self):
        upload = self.cleaned_data["upload"]
        validate_domain_file_name(upload.name)
        if upload.size > DOMAIN_FILE_MAX_BYTES:
            raise forms.ValidationError(
                _("This file is larger than %(limit)s bytes: WeCom's verification files are a few bytes."),
                code="too_large",
                params={"limit": DOMAIN_FILE_MAX_BYTES},
            )
        return upload

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("upload")
        if upload is not None:
            self.instance.name = upload.name
            self.instance.content = upload.read(DOMAIN_FILE_MAX_BYTES + 1)
            existing = DomainVerificationFile.objects.filter(name=upload.name).exclude(pk=self.instance.pk)
            if existing.exists():
                raise forms.ValidationError(_("A file with this name is already uploaded."), code="duplicate")
        return cleaned


@admin.register(DomainVerificationFile)
class DomainVerificationFileAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = DomainVerificationFileForm
    list_display = ("name", "tenant", "served_at", "uploaded_at")
    list_select_related = ("tenant",)
    search_fields = ("name",)

    @admin.display(description=_("served at"))
    def served_at(self, obj):
        from django.utils.html import format_html

        url = reverse("wecom-domain-file", kwargs={"name": obj.name})
        return format_html('<a href="{}">{}</a>', url, url)
