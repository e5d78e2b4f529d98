"""Customer groups (issue 18 item 4): groupchat/list + groupchat/get in the customer sync, and
change_external_chat (create, update, dismiss) applied to the mirror, over real HTTP against the fake."""

import pytest
from django.urls import reverse

from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration import signals
from wecom_integration.client import WeComError, client_for
from wecom_integration.customers import sync as customer_sync
from wecom_integration.directory import sync
from wecom_integration.models import CustomerGroup, SyncRun

pytestmark = pytest.mark.django_db


def customers_of(fake, n):
    return list(fake.org.external_contacts)[:n]


def owner_of(fake):
    return next(u.userid for u in fake.org.users.values() if u.follows)


def test_the_fake_lists_and_reads_groups_as_wecom_does(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    client = client_for(config_from_fake(make_tenant("grp"), fake_wecom), "customers")
    owner = owner_of(fake_wecom)
    chats = [fake_wecom.create_group_chat(owner, f"客户群{n}", customers_of(fake_wecom, 2), push=False)[0]
             for n in range(3)]
    page = client.externalcontact.groupchat_list(limit=2)
    assert len(page["group_chat_list"]) == 2 and page["next_cursor"]
    assert sorted(client.externalcontact.iter_groupchats()) == sorted(chats)
    group = client.externalcontact.groupchat_get(chats[0])
    assert group["owner"] == owner and [m["type"] for m in group["member_list"]] == [1, 2, 2]
    with pytest.raises(WeComError) as gone:
        client.externalcontact.groupchat_get("wrnosuchgroup")
    assert gone.value.errcode == 40050


def test_the_customer_sync_mirrors_groups_and_marks_vanished_ones_dismissed(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("grpsync")
    config_from_fake(tenant, fake_wecom)
    sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
    owner = owner_of(fake_wecom)
    kept, _ = fake_wecom.create_group_chat(owner, "VIP 客户群", customers_of(fake_wecom, 3), push=False)
    gone, _ = fake_wecom.create_group_chat(owner, "旧群", customers_of(fake_wecom, 1), push=False)
    run = customer_sync.execute_customer_run(sync.create_run(tenant, SyncRun.Kind.CUSTOMERS, None).pk)
    assert run.status == SyncRun.Status.SUCCEEDED, run.errors
    assert run.counts["groups"] == {"fetched": 2, "dismissed": 0}
    group = CustomerGroup.objects.get(tenant=tenant, chat_id=kept)
    assert group.name == "VIP 客户群" and group.owner == owner and group.members.count() == 4
    assert set(group.members.values_list("type", flat=True)) == {1, 2}
    fake_wecom.dismiss_group_chat(gone, push=False)
    run = customer_sync.execute_customer_run(sync.create_run(tenant, SyncRun.Kind.CUSTOMERS, None).pk)
    assert run.counts["groups"] == {"fetched": 1, "dismissed": 1}
    assert CustomerGroup.objects.get(chat_id=gone).dismissed


@pytest.fixture
def wired(live_server, transactional_db, fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    config = config_from_fake(make_tenant("grplive"), fake_wecom)
    token, aes_key = config.callback_credentials("customers")
    url = live_server.url + reverse("wecom_integration:callback-customers", kwargs={"tenant_id": config.tenant_id})
    fake_wecom.register_callback(url, token, aes_key, kind="customers")
    return config


def test_group_callbacks_keep_the_mirror_current(wired, fake_wecom):
    seen = []

    def receiver(sender, **kwargs):
        seen.append((kwargs["change_type"], kwargs["group"].chat_id if kwargs["group"] else None))

    signals.customer_changed.connect(receiver, dispatch_uid="test-groups")
    try:
        owner = owner_of(fake_wecom)
        first, second = customers_of(fake_wecom, 2)
        chat_id, [delivery] = fake_wecom.create_group_chat(owner, "新群", [first])
        assert delivery.status == 200
        group = CustomerGroup.objects.get(tenant=wired.tenant, chat_id=chat_id)
        assert group.members.count() == 2
        fake_wecom.add_group_member(chat_id, second, join_scene=3)
        assert group.members.get(userid=second).join_scene == 3
        fake_wecom.rename_group_chat(chat_id, "改名后的群")
        group.refresh_from_db()
        assert group.name == "改名后的群"
        fake_wecom.dismiss_group_chat(chat_id)
        group.refresh_from_db()
        assert group.dismissed and group.dismissed_at is not None
    finally:
        signals.customer_changed.disconnect(dispatch_uid="test-groups")
    assert seen == [("create", chat_id), ("update", chat_id), ("update", chat_id), ("dismiss", chat_id)]


def test_groups_in_the_admin_stay_in_their_tenant(client, fake_wecom, settings):
    tenant, other = make_tenant("grpadm"), make_tenant("grpother")
    mine = CustomerGroup.objects.create(tenant=tenant, chat_id="wrmine", name="我的群")
    theirs = CustomerGroup.objects.create(tenant=other, chat_id="wrtheirs", name="别人的群")
    mine.members.create(userid="wmcust", type=2, name="客户甲", join_scene=3)
    client.force_login(make_tenant_admin("grpboss", tenant))
    page = client.get("/admin/wecom_integration/customergroup/").content.decode()
    assert "我的群" in page and "别人的群" not in page
    detail = client.get(f"/admin/wecom_integration/customergroup/{mine.pk}/change/").content.decode()
    assert "客户甲" in detail
    assert client.get(f"/admin/wecom_integration/customergroup/{theirs.pk}/change/").status_code == 403
