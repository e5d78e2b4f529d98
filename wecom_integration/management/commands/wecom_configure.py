"""Configuration as code: create or update a tenant and its WeCom configuration, print JSON.

Secrets should not be given on the command line (it shows in ``ps`` and shell history): put them in a
JSON object read with ``--from-json FILE`` (``-`` reads standard input), keyed by the option names
(``{"secret": "…", "contact_aes_key": "…"}``). Options given on the command line win over the file.

The callback URLs printed are built on ``--base-url``, else ``WECOM["PUBLIC_BASE_URL"]``; with neither,
the command prints their paths and says so on standard error (it has no request to take a host from).
"""

import json
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from wecom_integration.configuration.services import callback_urls, configure_tenant, public_base_url
from wecom_integration.extension import get_adapter

# option name -> model field
OPTIONS = {
    "corp_id": "corp_id",
    "agent_id": "agent_id",
    "secret": "secret",
    "contact_secret": "contact_secret",
    "contact_token": "contact_token",
    "contact_aes_key": "contact_aes_key",
    "customer_credential": "customer_credential",  # "secret" or "app" (docs 92994, 96316)
    "customer_secret": "customer_secret",
    "customer_token": "customer_token",
    "customer_aes_key": "customer_aes_key",
    "app_token": "app_token",
    "app_aes_key": "app_aes_key",
    "two_step_credential": "two_step_credential",  # "contacts" or "app" (docs 99499, 99500)
}


class Command(BaseCommand):
    help = "Create or update a tenant and its WeCom configuration (idempotent); prints JSON."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--tenant-code", help="The house number (门牌号) of a tenants.Tenant, found or created.")
        which.add_argument("--tenant-id", type=int, help="The pk of an existing row of WECOM_TENANT_MODEL.")
        parser.add_argument("--tenant-name")
        parser.add_argument("--admin", help="An existing username to make an active admin of the tenant.")
        parser.add_argument("--disable", action="store_true", help="Turn the configuration off.")
        parser.add_argument(
            "--from-json", metavar="FILE",
            help="A JSON object of option values (secrets), keyed by option name with underscores; - reads stdin.",
        )
        parser.add_argument(
            "--base-url", metavar="URL",
            help='The public origin WeCom reaches this site at, e.g. https://erp.example.com (default: '
            'WECOM["PUBLIC_BASE_URL"]).',
        )
        for option in OPTIONS:
            parser.add_argument("--" + option.replace("_", "-"), dest=option)

    def handle(self, *args, **options):
        given = self._read_json(options["from_json"]) if options["from_json"] else {}
        values = {}
        for option, field in OPTIONS.items():
            value = options.get(option)
            if value is None:
                value = given.get(option)
            if value is not None:
                values[field] = str(value).strip()
        if "agent_id" in values:
            try:
                values["agent_id"] = int(values["agent_id"])
            except ValueError:
                raise CommandError("agent_id: AgentId must be a positive integer.") from None
        if options["disable"]:
            values["enabled"] = False
        base_url = (options.get("base_url") or "").strip()
        if base_url and not base_url.startswith(("https://", "http://")):
            raise CommandError("--base-url must start with https:// (or http:// on a laptop).")
        try:
            tenant, config = configure_tenant(
                tenant_code=options.get("tenant_code"),
                tenant_id=options.get("tenant_id"),
                tenant_name=options.get("tenant_name"),
                admin_username=options.get("admin"),
                values=values,
            )
        except ValidationError as exc:
            raise CommandError(_format(exc)) from None
        base = public_base_url(base_url=base_url)
        if not base:
            self.stderr.write(
                'No public address is known (neither --base-url nor WECOM["PUBLIC_BASE_URL"]): the callback '
                "URLs below are paths; prefix them with the address WeCom reaches this site at."
            )
        self.stdout.write(
            json.dumps(
                {
                    "tenant_id": tenant.pk,
                    "tenant_code": get_adapter().tenant_code(tenant),
                    "corp_id": config.corp_id,
                    "agent_id": config.agent_id,
                    "base_url": base or None,
                    "callback_urls": callback_urls(tenant.pk, base_url=base_url),
                },
                ensure_ascii=False,
            )
        )

    def _read_json(self, source):
        try:
            if source == "-":
                data = json.load(sys.stdin)
            else:
                with open(source, encoding="utf-8") as handle:
                    data = json.load(handle)
        except (OSError, ValueError) as exc:
            # The class only: the message of a JSON error quotes the input, which holds secrets.
            raise CommandError(f"--from-json: cannot read a JSON object ({type(exc).__name__}).") from None
        if not isinstance(data, dict):
            raise CommandError("--from-json: the file must hold one JSON object.")
        unknown = sorted(set(data) - set(OPTIONS))
        if unknown:
            raise CommandError(f"--from-json: unknown keys {', '.join(unknown)}; known: {', '.join(OPTIONS)}.")
        return data


def _format(exc):
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(str(m) for m in exc.messages)
