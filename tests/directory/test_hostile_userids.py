"""Issue 16 item 3: WeCom userids and external userids are data, never path syntax.

An app message from a userid containing ``/`` made the inbox list and the conversations page answer
500. Here any value a hostile callback can carry (``/``, ``..``, ``%``, spaces, ``?``, ``#``, Chinese,
64+ characters) is stored as the product stores it (app messages and contact changes through a
callback sealed by the fake's signer; customers, bindings and sync proposals through the ORM, as no
callback carries them whole), then every admin page that shows such ids is rendered as the tenant's
admin and every link on it followed: all answer 200, and the conversation pages show that member.
"""

import html
import re
from urllib.parse import urlsplit

import pytest
from django.test import Client, TestCase
from django.urls import reverse
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tenants.models import Membership
from tests.callbacks.test_callbacks import post_envelope, sender_for
from tests.factories import make_config, make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration.converters import WeComIdConverter
from wecom_integration.directory import bindings, sync
from wecom_integration.models import ExternalContact, FollowUser, InboxMessage, SyncRun, WeComUser
from wecom_integration.testing.callbacks import build_contact_user_xml, build_message_xml

pytestmark = pytest.mark.django_db

HOSTILE = list("/.%? #&<>\"'\\+=;:@~!$()*,[]{}|^`") + ["..", "%2F", "%25", "张", "三", "\u3000", "a", "Z", "0", "_"]
hostile_ids = st.lists(
    st.sampled_from(HOSTILE) | st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=90
).map("".join).filter(lambda text: text.strip())

HREF = re.compile(r'href="([^"]*)"')


# The links to rows and conversations (not the menus, filters and sorting every admin page has).
ROW_LINK = re.compile(r"^/admin/(tenants|wecom_integration)/.*/(change|conversations/\d+/[^/]+|reply/\d+/[^/]+)/$")


def links(content, here):
    """The links of a page that lead to a row or a conversation, as a browser would request them."""
    found = set()
    for raw in HREF.findall(content):
        url = html.unescape(raw)
        path = urlsplit(url).path
        if path != here and ROW_LINK.match(path):
            found.add(url)
    return found


def deliver(client, config, kind, xml):
    params, body = sender_for(config, kind).envelope(xml)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return post_envelope(client, config, kind, params, body)


def store_everywhere(admin, userid, n):
    """A new tenant of ``admin`` whose rows carry ``userid`` (and an external userid made of it)."""
    tenant = make_tenant(f"h{n}")
    config = make_config(tenant)
    make_member(admin, tenant, role=Membership.Role.ADMIN)
    admin._admin_tenant_ids = None
    hook = Client()
    # Through callbacks, as an attacker inside the corp (or WeCom itself) would send them.
    answer = deliver(hook, config, "app", build_message_xml(config.corp_id, userid, config.agent_id, content="hi"))
    assert answer.status_code == 200
    answer = deliver(hook, config, "contacts", build_contact_user_xml(
        config.corp_id, "create_user", {"userid": userid, "name": f"名{userid}"[:64], "department": [1]}))
    assert answer.status_code == 200
    stored = InboxMessage.objects.get(tenant=tenant).wecom_userid
    # Rows no callback carries whole.
    member = WeComUser.objects.filter(tenant=tenant).first() or WeComUser.objects.create(
        tenant=tenant, userid=stored[:64], name="x")
    other = WeComUser.objects.create(tenant=tenant, userid=(stored[:60] + "#2"), name=stored[:60])
    account = make_user(f"acct{n}", password=None)
    make_member(account, tenant, status=Membership.Status.ACTIVE)
    bindings.bind(tenant, account, member, actor=admin, source="admin")
    contact = ExternalContact.objects.create(tenant=tenant, external_userid=("wm" + stored)[:128], name=stored[:50])
    FollowUser.objects.create(contact=contact, userid=stored[:64])
    run = sync.create_run(tenant, actor=admin)
    run.status = SyncRun.Status.REVIEW
    run.save(update_fields=["status"])
    sync.build_proposals(run)
    assert run.proposals.filter(wecom_user=other).exists()
    return tenant, stored, run


def pages(tenant, run):
    query = f"?tenant__id__exact={tenant.pk}"
    return [
        reverse("admin:wecom_integration_inboxmessage_changelist") + query,
        reverse("admin:wecom_integration_inboxmessage_conversations"),
        reverse("admin:wecom_integration_externalcontact_changelist") + query,
        reverse("admin:wecom_integration_wecomuser_changelist") + query,
        reverse("admin:wecom_integration_binding_changelist") + query,
        reverse("admin:wecom_integration_auditlog_changelist") + query,
        reverse("admin:wecom_integration_callbackevent_changelist") + query,
        reverse("admin:wecom_integration_syncrun_review", args=[run.pk]),
    ]


COUNTER = iter(range(10**6))


@pytest.fixture
def admin():
    """One tenant admin for every example (a password hash per example would dominate the run), with
    the links already followed (pages list the earlier examples' rows too)."""
    user = make_tenant_admin("hadmin", make_tenant("home"))
    user.followed = set()
    return user


@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(userid=hostile_ids)
@example(userid="a/b")
@example(userid="..")
@example(userid=".")
@example(userid="%")
@example(userid="%2F")
@example(userid="zhang san")
@example(userid="张三")
@example(userid="why?#frag")
@example(userid="u" * 70)
@example(userid="/" * 64)
def test_every_page_showing_a_hostile_userid_answers_and_its_links_work(admin, userid):
    tenant, stored, run = store_everywhere(admin, userid, next(COUNTER))
    client = Client(headers={"accept-language": "en"})
    client.force_login(admin)
    seen = admin.followed
    for url in pages(tenant, run):
        page = client.get(url)
        assert page.status_code == 200, (url, page.status_code)
        for link in links(page.content.decode(), urlsplit(url).path) - seen:
            seen.add(link)
            followed = client.get(link)
            assert followed.status_code == 200, (url, link, followed.status_code)
            if "/conversations/" in link:
                # It is the conversation of the member linked (the admin's earlier tenants' too), and
                # its own links (reply) work.
                shown = followed.context["conversation_messages"]
                assert shown and {m.wecom_userid for m in shown} == {followed.context["wecom_userid"]}
                for inner in links(followed.content.decode(), urlsplit(link).path) - seen:
                    seen.add(inner)
                    assert client.get(inner).status_code == 200, (link, inner)
    assert reverse("admin:wecom_integration_inboxmessage_conversation", args=[tenant.pk, stored]) in seen
    assert reverse("admin:wecom_integration_messagelog_inbox_reply", args=[tenant.pk, stored]) in seen


@pytest.mark.parametrize("value", ["a/b", "..", ".", "%", "%2F", "a b", "张三", "?#", "x" * 200, "zhang.san"])
def test_the_converter_round_trips(value):
    converter = WeComIdConverter()
    encoded = converter.to_url(value)
    assert "/" not in encoded and "?" not in encoded and "#" not in encoded and encoded.strip(".")
    assert re.fullmatch(converter.regex, encoded)
    assert converter.to_python(encoded) == value
