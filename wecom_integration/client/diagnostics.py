"""The admin's "Test connection": is every secret entered accepted by WeCom, and if not, why? And which
IP does WeCom see (through the tenant's proxy, if one is set)?"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.utils.translation import gettext

from wecom_integration.client import SECRET_KINDS, client_for, secret_for
from wecom_integration.client.errors import (
    WeComConfigError,
    WeComError,
    WeComNetworkError,
    WeComRateLimited,
    kind_label,
)

# A cheap read per secret after its token: gettoken alone does not check the caller's IP (60020) or the
# secret's permissions (48002), which is what admins most often get wrong.
PROBES = {
    "app": ("department/simplelist", None),
    "contacts": ("department/simplelist", None),
    # Customer access (docs 92994, 96316): new corps' 客户联系 secret and unauthorised apps answer 48002 here.
    "customers": ("externalcontact/get_follow_user_list", None),
}
FORBIDDEN = 48002


@dataclass(frozen=True)
class SecretCheck:
    kind: str
    label: str
    ok: bool
    message: str


def test_connection(config):
    """Fetch a fresh access token with every secret ``config`` holds and run one read with it.

    Returns one SecretCheck per secret kind; an empty secret is reported as not configured. Never
    raises for WeCom's answers: each check's ``message`` is the text to show the admin.
    """
    checks = []
    for kind in SECRET_KINDS:
        label = str(kind_label(kind))
        if not config.corp_id:
            checks.append(SecretCheck(kind, label, False, gettext("The CorpID is not filled in.")))
            continue
        if not secret_for(config, kind):
            checks.append(SecretCheck(kind, label, False, gettext("Not configured.")))
            continue
        checks.append(_check(config, kind, label))
    if config.corp_id and any(secret_for(config, kind) for kind in SECRET_KINDS):
        # Asked even when every secret failed: a 60020 is exactly when the admin needs the IP to add.
        checks.append(check_egress(config))
    return checks


def check_egress(config):
    """Which IP WeCom sees this tenant's calls come from, and whether they went through the tenant's
    proxy: the IP to add to the app's trusted IPs (企业可信IP). See ``BaseWeComClient.egress_ip``."""
    label = gettext("Outbound IP (出口IP)")
    proxy = getattr(config, "proxy_url", "") or ""
    try:
        ip = client_for(config, next(kind for kind in SECRET_KINDS if secret_for(config, kind))).egress_ip()
    except WeComNetworkError as exc:
        if proxy:
            message = gettext("Could not reach WeCom through the proxy %(proxy)s: %(error)s")
            return SecretCheck("egress", label, False, message % {"proxy": proxy_label(proxy), "error": exc.errmsg})
        return SecretCheck("egress", label, False, gettext("Could not reach WeCom: %(error)s") % {"error": exc.errmsg})
    shown = ip or gettext("unknown")
    if proxy:
        message = gettext("WeCom sees %(ip)s: calls go through the proxy %(proxy)s.") % {
            "ip": shown,
            "proxy": proxy_label(proxy),
        }
    else:
        message = gettext("WeCom sees %(ip)s: calls go out directly, without a proxy.") % {"ip": shown}
    if ip:
        message += " " + gettext("This is the IP to add to the app's trusted IPs (企业可信IP).")
    return SecretCheck("egress", label, ip is not None, message)


def proxy_label(proxy_url):
    """The proxy's scheme, host and port, never its user name or password."""
    parts = urlsplit(proxy_url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


def _check(config, kind, label):
    try:
        client = client_for(config, kind)
        client.refresh_token()
        probe = PROBES.get(kind)
        if probe:
            client.get(probe[0], probe[1])
    except WeComConfigError as exc:
        if kind == "customers" and exc.errcode == FORBIDDEN:
            return SecretCheck(kind, label, False, _customer_access_refused(config))
        return SecretCheck(kind, label, False, exc.admin_message)
    except WeComRateLimited:
        return SecretCheck(
            kind, label, False, gettext("WeCom is limiting this company's calls right now; try again later.")
        )
    except WeComNetworkError as exc:
        return SecretCheck(
            kind, label, False, gettext("Could not reach WeCom: %(error)s") % {"error": exc.errmsg}
        )
    except WeComError as exc:
        return SecretCheck(
            kind,
            label,
            False,
            gettext("WeCom answered errcode %(errcode)s: %(errmsg)s")
            % {"errcode": exc.errcode, "errmsg": exc.errmsg},
        )
    if kind == "customers" and secret_for(config, kind) != (config.customer_secret or ""):
        message = gettext("OK (using the app Secret).")
    else:
        message = gettext("OK.")
    return SecretCheck(kind, label, True, message)


def _customer_access_refused(config):
    """What to change when WeCom refuses customer access, by the credential the configuration uses."""
    if secret_for(config, "customers") == (config.customer_secret or ""):
        return gettext(
            "WeCom refuses the customer-contact Secret: corps set up since 2023-12-01 cannot use it. In the WeCom "
            "admin, list this app under 客户联系 → 可调用接口的应用, then set \"customers are read with\" to the app."
        )
    return gettext(
        "WeCom refuses this app for customer contact. In the WeCom admin, add it under 客户联系 → 可调用接口的应用 "
        "(or, for a corp set up before 2023-12-01, read customers with the customer-contact Secret)."
    )


# Not a test: keeps pytest from collecting it when a test module imports it.
test_connection.__test__ = False
