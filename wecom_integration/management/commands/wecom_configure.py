"""Configuration as code: create or update a tenant and its WeCom configuration, print JSON.

Secrets may come from the environment instead of the command line (which shows in `ps` and shell
history): WECOM_SECRET, WECOM_CONTACT_SECRET, WECOM_CONTACT_TOKEN, WECOM_CONTACT_AES_KEY,
WECOM_CUSTOMER_SECRET, WECOM_CUSTOMER_TOKEN, WECOM_CUSTOMER_AES_KEY, WECOM_APP_TOKEN, WECOM_APP_AES_KEY.
"""

import json
import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ...services.configuration import callback_urls, configure_tenant

# option name -> (model field, environment variable or None)
OPTIONS = {
    "corp_id": ("corp_id", "WECOM_CORP_ID"),
    "agent_id": ("agent_id", "WECOM_AGENT_ID"),
    "secret": ("secret", "WECOM_SECRET"),
    "contact_secret": ("contact_secret", "WECOM_CONTACT_SECRET"),
    "contact_token": ("contact_token", "WECOM_CONTACT_TOKEN"),
    "contact_aes_key": ("contact_aes_key", "WECOM_CONTACT_AES_KEY"),
    "customer_credential": ("customer_credential", None),  # "secret" or "app" (docs 92994, 96316)
    "customer_secret": ("customer_secret", "WECOM_CUSTOMER_SECRET"),
    "customer_token": ("customer_token", "WECOM_CUSTOMER_TOKEN"),
    "customer_aes_key": ("customer_aes_key", "WECOM_CUSTOMER_AES_KEY"),
    "app_token": ("app_token", "WECOM_APP_TOKEN"),
    "app_aes_key": ("app_aes_key", "WECOM_APP_AES_KEY"),
    "two_step_credential": ("two_step_credential", None),  # "contacts" or "app" (docs 99499, 99500)
}


class Command(BaseCommand):
    help = "Create or update a tenant and its WeCom configuration (idempotent); prints JSON."

    def add_arguments(self, parser):
        parser.add_argument("--tenant-code", required=True, help="The tenant's house number (门牌号).")
        parser.add_argument("--tenant-name")
        parser.add_argument("--admin", help="An existing username to make an active admin of the tenant.")
        parser.add_argument("--disable", action="store_true", help="Turn the configuration off.")
        for option in OPTIONS:
            parser.add_argument("--" + option.replace("_", "-"), dest=option)

    def handle(self, *args, **options):
        values = {}
        for option, (field, env) in OPTIONS.items():
            value = options.get(option)
            if value is None and env:
                value = os.environ.get(env)
            if value is not None:
                values[field] = value.strip()
        if "agent_id" in values:
            try:
                values["agent_id"] = int(values["agent_id"])
            except ValueError:
                raise CommandError("agent_id: AgentId must be a positive integer.") from None
        if options["disable"]:
            values["enabled"] = False
        try:
            tenant, config = configure_tenant(
                tenant_code=options["tenant_code"],
                tenant_name=options.get("tenant_name"),
                admin_username=options.get("admin"),
                values=values,
            )
        except ValidationError as exc:
            raise CommandError(_format(exc)) from None
        self.stdout.write(
            json.dumps(
                {
                    "tenant_id": tenant.pk,
                    "tenant_code": tenant.code,
                    "corp_id": config.corp_id,
                    "agent_id": config.agent_id,
                    "callback_urls": callback_urls(tenant.pk),
                },
                ensure_ascii=False,
            )
        )


def _format(exc):
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(str(m) for m in exc.messages)
