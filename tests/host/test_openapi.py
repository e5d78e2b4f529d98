"""The OpenAPI schema: valid, free of generator warnings, public, and covering every API URL (everything
under /api/ and /sys/ in the URL resolver), so an endpoint added later without a schema fails here."""

import io
import re

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

API_PREFIXES = ("api/", "sys/")
# The schema and its docs page describe the API; they are not part of it.
NOT_IN_SCHEMA = {"wecom_integration:api-schema", "wecom_integration:api-docs"}
PLACEHOLDER = re.compile(r"<(?:[^>:]+:)?[^>]+>|\(\?P<[^>]+>[^)]*\)|\{[^}]+\}")


def url_patterns(resolver=None, prefix="", namespace=""):
    """(route, name) of every URL the project serves, with routes like 'api/messages/<int:pk>/'."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from url_patterns(entry, route, inner)
        elif isinstance(entry, URLPattern):
            yield route, f"{namespace}{entry.name}" if entry.name else ""


def normalise(path):
    return PLACEHOLDER.sub("{}", path.strip("/"))


@pytest.fixture(scope="module")
def schema_text(django_db_blocker):
    out = io.StringIO()
    with django_db_blocker.unblock():
        # --fail-on-warn turns any warning of the generator (an unresolvable serializer, a view it cannot
        # introspect) into an error; --validate checks the result against the OpenAPI 3 JSON schema.
        # The app's own generator: its API views only, whatever the host serves besides.
        call_command(
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--generator-class",
            "wecom_integration.api.schema.AppSchemaGenerator",
            stdout=out,
        )
    return out.getvalue()


def test_schema_is_valid_and_warning_free(schema_text):
    schema = yaml.safe_load(schema_text)
    assert schema["openapi"].startswith("3.")
    assert schema["paths"]


def test_every_api_url_is_in_the_schema(schema_text):
    documented = {normalise(path) for path in yaml.safe_load(schema_text)["paths"]}
    api_urls = [(route, name) for route, name in url_patterns() if route.startswith(API_PREFIXES)]
    assert any(route == "sys/thirdApp/sendMessageTest" for route, _ in api_urls)
    missing = [route for route, name in api_urls if name not in NOT_IN_SCHEMA and normalise(route) not in documented]
    assert missing == [], f"API URLs without an OpenAPI schema: {missing}"


def test_test_push_contract_is_documented(schema_text):
    schema = yaml.safe_load(schema_text)
    operation = schema["paths"]["/sys/thirdApp/sendMessageTest"]["post"]
    assert {"AccessToken": []} in operation["security"]
    assert schema["components"]["securitySchemes"]["AccessToken"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Access-Token",
    }
    assert any(p["name"] == "X-Tenant-Id" and p["in"] == "header" for p in operation["parameters"])
    request = schema["components"]["schemas"]["SendMessageTestRequest"]
    # JeecgBoot's four, and msgType (ours, optional: JeecgBoot never sends it, so its pushes stay texts).
    assert set(request["properties"]) == {"app", "receiver", "sendAll", "content", "msgType"}
    assert set(request["required"]) == {"app", "content"}
    envelope = schema["components"]["schemas"]["SendMessageTestResponse"]
    assert set(envelope["properties"]) == {"success", "message", "code", "result", "timestamp", "error"}
    assert sorted(envelope["required"]) == ["code", "message", "result", "success", "timestamp"]
    # Who may send is part of the contract.
    assert "sendAll" in operation["description"] and "recipients_need_admin" in operation["description"]
    assert {"200", "400", "401", "403", "502", "503"} <= set(operation["responses"])


def test_schema_endpoint_is_public():
    client = APIClient()
    answer = client.get("/api/schema/")
    assert answer.status_code == 200
    assert b"/sys/thirdApp/sendMessageTest" in answer.content
    # A bad token does not lock anyone out of the public schema.
    assert client.get("/api/schema/", HTTP_X_ACCESS_TOKEN="bad").status_code == 200


def test_docs_page_is_public_and_self_hosted():
    answer = APIClient().get("/api/docs/", HTTP_X_ACCESS_TOKEN="bad")
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "/api/schema/" in page
    # No CDN: every script and stylesheet comes from this server.
    assert not re.search(r"""(src|href)=["']https?://""", page), page


def test_docs_page_uses_the_sidecar_assets_when_installed():
    pytest.importorskip("drf_spectacular_sidecar")
    from django.test import modify_settings

    with modify_settings(INSTALLED_APPS={"append": "drf_spectacular_sidecar"}):
        page = APIClient().get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert not re.search(r"""(src|href)=["']https?://""", page), page
