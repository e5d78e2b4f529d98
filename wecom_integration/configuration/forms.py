"""The configuration form: secrets are write-only (never rendered back; blank keeps the stored value)."""

from django import forms
from django.utils.translation import gettext_lazy as _

from wecom_integration.models import WeComConfig


class WriteOnlyInput(forms.PasswordInput):
    """Renders empty whatever is stored; the placeholder tells whether something is stored."""

    def __init__(self, attrs=None):
        super().__init__(attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False)


class WeComConfigForm(forms.ModelForm):
    class Meta:
        model = WeComConfig
        fields = [
            "tenant",
            "corp_id",
            "agent_id",
            "secret",
            "contact_secret",
            "contact_token",
            "contact_aes_key",
            "customer_credential",
            "customer_secret",
            "customer_token",
            "customer_aes_key",
            "app_token",
            "app_aes_key",
            "approval_secret",
            "archive_secret",
            "archive_private_key",
            "enabled",
            "auto_reply",
            "allow_signup",
            "customer_member_link",
            "two_step_verification",
            "private_info_scope",
            "proxy_url",
            "two_step_credential",
            "periodic_sync",
            "sync_interval_minutes",
        ]
        widgets = {name: WriteOnlyInput() for name in WeComConfig.WRITE_ONLY_FIELDS}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stored = {}
        for name in WeComConfig.WRITE_ONLY_FIELDS:
            field = self.fields.get(name)
            if field is None:
                continue
            stored = bool(self.instance.pk and getattr(self.instance, name))
            self._stored[name] = stored
            field.required = False
            field.widget.attrs["placeholder"] = (
                _("stored — leave blank to keep") if stored else _("not set")
            )
            field.help_text = (field.help_text + " " if field.help_text else "") + str(
                _("Write-only: the stored value is never shown. Leave blank to keep it.")
            )
            # Keep stored values out of the form's initial data, so they never reach the page.
            self.initial[name] = ""
        # The credential choices have defaults: a client that does not send them (an older form, a script)
        # keeps what is stored instead of failing validation.
        for name in ("customer_credential", "two_step_credential"):
            if name in self.fields:
                self.fields[name].required = False

    def _clean_write_only(self, name):
        value = (self.cleaned_data.get(name) or "").strip()
        if not value and self.instance.pk:
            return getattr(self.instance, name)
        return value

    def clean(self):
        cleaned = super().clean()
        for name in WeComConfig.WRITE_ONLY_FIELDS:
            if name in self.fields:
                cleaned[name] = self._clean_write_only(name)
        for name in ("customer_credential", "two_step_credential"):
            if name in self.fields and not cleaned.get(name):
                cleaned[name] = getattr(self.instance, name) or WeComConfig._meta.get_field(name).default
        return cleaned
