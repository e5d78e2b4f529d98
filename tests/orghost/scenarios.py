"""Run by tests/host/test_tenant_model.py with tests.orghost.settings: the app with a host's own organisation
model (``WECOM_TENANT_MODEL = "orghost.Organization"``), its own memberships (``Seat``) answered through
an adapter subclass, and the ``tenants`` app not installed (issue 24 item 1). Against the fake WeCom."""

import base64
import io
import json
import secrets
import sys

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.orghost.models import Organization, Seat
from wecom_integration.directory import sync
from wecom_integration.models import Binding, WeComConfig, WeComUser
from wecom_integration.tenancy import get_tenant_model

pytestmark = pytest.mark.django_db
User = get_user_model()


def aes_key():
    return base64.b64encode(secrets.token_bytes(32)).decode()[:-1]


@pytest.fixture
def fake(fake_wecom):
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base, "ADAPTER": "tests.orghost.adapter.OrgAdapter"}):
        yield fake_wecom


@pytest.fixture
def org(fake):
    org = Organization.objects.create(title="Acme Ltd", slug="acme")
    WeComConfig.objects.create(
        tenant=org, corp_id=fake.corp_id, agent_id=fake.agent_id, secret=fake.secret,
        contact_secret=fake.contact_secret, contact_token="ctok" + secrets.token_hex(4), contact_aes_key=aes_key(),
    )
    return org


def user(name, *, staff=False):
    return User.objects.create_user(name, password="pw-123456!", is_staff=staff)


def test_the_tenants_app_is_neither_installed_nor_imported():
    assert not apps.is_installed("tenants")
    assert "tenants" not in sys.modules and "tenants.models" not in sys.modules
    assert get_tenant_model() is Organization
    assert WeComConfig._meta.get_field("tenant").related_model is Organization
    assert WeComUser._meta.get_field("tenant").related_model is Organization


def test_checks_pass_and_migrations_do_not_change():
    call_command("check")
    call_command("makemigrations", "--check", "--dry-run", stdout=io.StringIO())


def test_configure_an_existing_organisation_by_its_id(fake, tmp_path):
    org = Organization.objects.create(title="Beta", slug="beta")
    boss = user("boss")
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"secret": fake.secret, "contact_secret": fake.contact_secret}))
    out = io.StringIO()
    call_command(
        "wecom_configure", "--tenant-id", str(org.pk), "--corp-id", fake.corp_id, "--agent-id", str(fake.agent_id),
        "--admin", "boss", "--from-json", str(secrets_file), "--base-url", "https://erp.example.com", stdout=out,
        stderr=io.StringIO(),
    )
    printed = json.loads(out.getvalue())
    assert printed["tenant_id"] == org.pk and printed["tenant_code"] == "beta"
    assert printed["callback_urls"]["contacts"].startswith("https://erp.example.com/")
    config = WeComConfig.objects.get(tenant=org)
    assert (config.corp_id, config.secret) == (fake.corp_id, fake.secret)
    assert Seat.objects.filter(user=boss, organization=org, manager=True, state="on").exists()
    assert Organization.objects.count() == 1  # nothing created
    with pytest.raises(CommandError, match="tenant-id"):
        call_command("wecom_configure", "--tenant-code", "gamma", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="No tenant"):
        call_command("wecom_configure", "--tenant-id", "999999", stdout=io.StringIO(), stderr=io.StringIO())


def test_a_sync_and_its_confirm_keep_memberships_in_the_hosts_seats(fake, org):
    every = list(fake.org.users.values())
    names = [m.name for m in every]
    # Active members with a name nobody else has: matched by name, or given an account.
    members = [m for m in every if m.status == 1 and names.count(m.name) == 1]
    seated = User.objects.create_user("seated", first_name=members[0].name)  # the host's member, same name
    Seat.objects.create(user=seated, organization=org)
    outsider = user("outsider")  # an account of the host with no seat in the organisation
    run = sync.execute_contact_run(sync.create_run(org, actor=user("syncer")).pk)
    assert run.status == run.Status.REVIEW, run.errors
    assert WeComUser.objects.filter(tenant=org).count() == len(every)
    # Matching by name looked among the organisation's members, asked of the adapter.
    assert run.proposals.get(wecom_user__userid=members[0].userid).user == seated

    sync.confirm_run(
        run, actor=user("confirmer"), accept_proposals=True, create_unmatched=True,
        decisions=[sync.Decision(members[1].userid, "bind", "outsider")],
    )
    bound = dict(Binding.objects.filter(tenant=org).values_list("wecom_user__userid", "user_id"))
    assert bound[members[0].userid] == seated.pk and bound[members[1].userid] == outsider.pk
    seats = dict(Seat.objects.filter(organization=org).values_list("user_id", "state"))
    assert seats[seated.pk] == "on"
    assert seats[outsider.pk] == "waiting"  # an existing account bound: pending the host's approval
    created = User.objects.filter(pk__in=[bound[m.userid] for m in members[2:]])
    assert created.count() == len(members) - 2 > 10
    assert all(name.startswith("acme") for name in created.values_list("username", flat=True))
    assert {seats[pk] for pk in created.values_list("pk", flat=True)} == {"on"}


def post_send_all(caller, tenant_id):
    token = Token.objects.get_or_create(user=caller)[0].key
    headers = {"HTTP_X_ACCESS_TOKEN": token, "HTTP_ACCEPT_LANGUAGE": "en"}
    if tenant_id is not None:
        headers["HTTP_X_TENANT_ID"] = str(tenant_id)
    body = {"app": "WECHAT_ENTERPRISE", "receiver": "", "sendAll": True, "content": "hello"}
    return APIClient().post("/sys/thirdApp/sendMessageTest", body, format="json", **headers)


def test_send_message_test_follows_the_hosts_own_rule(fake, org):
    manager, member, stranger = user("manager"), user("member"), user("stranger")
    Seat.objects.create(user=manager, organization=org, manager=True)
    Seat.objects.create(user=member, organization=org)
    other = Organization.objects.create(title="Other", slug="other")
    Seat.objects.create(user=stranger, organization=other, manager=True)

    answer = post_send_all(manager, org.pk)
    assert answer.status_code == 200 and answer.json()["success"] is True, answer.content
    assert [m["touser"] for m in fake.sent_messages] == ["@all"]
    assert post_send_all(member, org.pk).status_code == 403  # a seat, but not a manager: not @all
    assert post_send_all(stranger, org.pk).status_code == 403  # a manager elsewhere
    assert len(fake.sent_messages) == 1
    # No X-Tenant-Id: there is no tenant 0 with a host's model, so the header is required.
    assert post_send_all(manager, None).status_code == 400


def test_the_admin_shows_a_manager_only_their_organisations_rows(client, fake, org):
    other = Organization.objects.create(title="Other", slug="other")
    mine = WeComUser.objects.create(tenant=org, userid="mine")
    theirs = WeComUser.objects.create(tenant=other, userid="theirs")
    manager = user("manager", staff=True)
    Seat.objects.create(user=manager, organization=org, manager=True)
    client.force_login(manager)
    changelist = client.get(reverse("admin:wecom_integration_wecomuser_changelist"))
    assert changelist.status_code == 200
    assert {o.pk for o in changelist.context["cl"].result_list} == {mine.pk}
    assert client.get(reverse("admin:wecom_integration_wecomuser_change", args=[theirs.pk])).status_code == 403
    assert client.get(reverse("admin:wecom_integration_syncrun_changelist")).status_code == 200


def test_the_login_page_and_the_configuration_search_work_with_the_hosts_model(client, fake, org):
    page = client.get("/accounts/login/").content.decode()
    assert "Acme Ltd" in page  # the organisation's str(), as it has no "name"
    assert client.get(f"/accounts/login/?tenant={org.pk}").status_code == 200
    manager = user("manager", staff=True)
    Seat.objects.create(user=manager, organization=org, manager=True)
    client.force_login(manager)
    found = client.get(reverse("admin:wecom_integration_wecomconfig_changelist") + "?q=" + fake.corp_id[:6])
    assert found.status_code == 200 and len(found.context["cl"].result_list) == 1
