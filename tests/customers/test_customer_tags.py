"""Customer tags (issue 18 item 5): the fake's corp tag library and mark_tag held to WeCom's rules, the library and
each relation's tags mirrored by the customer sync and kept current by change_external_tag and
edit_external_contact, and changed from the admin through WeCom — over real HTTP against the fake."""

import pytest
from django.urls import reverse

from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration.client import WeComError, client_for
from wecom_integration.customers import sync as customer_sync
from wecom_integration.directory import sync
from wecom_integration.models import AuditLog, CustomerTag, ExternalContact, FollowUser, SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def corp(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("ctags")
    config = config_from_fake(tenant, fake_wecom)
    return tenant, config


def errcode(call):
    with pytest.raises(WeComError) as caught:
        call()
    return caught.value.errcode


def a_relation(fake):
    """A (member, customer) pair of the fake corp."""
    contact = next(iter(fake.org.external_contacts.values()))
    return contact.followers[0].user.userid, contact.external_userid


def library(tenant):
    return {(t.group_name, t.name) for t in CustomerTag.objects.filter(tenant=tenant)}


def synced(tenant):
    sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
    run = customer_sync.execute_customer_run(sync.create_run(tenant, SyncRun.Kind.CUSTOMERS, None).pk)
    assert run.status == SyncRun.Status.SUCCEEDED, run.errors
    return run


def test_the_fake_refuses_customer_tag_changes_as_wecom_does(corp, fake_wecom):
    _, config = corp
    api = client_for(config, "customers").externalcontact
    group = api.add_corp_tag(["金牌", "银牌"], group_name="会员等级")
    assert [t["name"] for t in group["tag"]] == ["金牌", "银牌"]
    assert errcode(lambda: api.add_corp_tag(["金牌"], group_id=group["group_id"])) == 40071
    assert errcode(lambda: api.add_corp_tag(["铜牌"], group_id="etnosuchgroup")) == 40068
    assert errcode(lambda: api.add_corp_tag(["长" * 31], group_name="会员等级")) == 40058
    assert errcode(lambda: api.add_corp_tag([], group_name="空")) == 40058
    gold = group["tag"][0]["id"]
    assert errcode(lambda: api.edit_corp_tag(gold, name="银牌")) == 40071
    userid, external_userid = a_relation(fake_wecom)
    assert errcode(lambda: api.mark_tag(userid, external_userid)) == 40058
    assert errcode(lambda: api.mark_tag(userid, external_userid, add=["etunknown"])) == 40068
    stranger = next(u.userid for u in fake_wecom.org.users.values() if not u.follows)
    assert errcode(lambda: api.mark_tag(stranger, external_userid, add=[gold])) == 84061
    api.mark_tag(userid, external_userid, add=[gold])
    tags = api.get(external_userid)["follow_user"]
    assert any(t["tag_id"] == gold for f in tags if f["userid"] == userid for t in f["tags"])
    # Deleting a group's last tag deletes the group, and the tag leaves every customer who had it.
    api.del_corp_tag(tag_ids=[gold, group["tag"][1]["id"]])
    assert group["group_id"] not in {g["group_id"] for g in api.get_corp_tag_list()}
    assert all(gold not in f.tag_ids for f in fake_wecom.org.external_contacts[external_userid].followers)
    assert errcode(lambda: api.del_corp_tag(tag_ids=[gold])) == 40068


def test_the_customer_sync_mirrors_the_library_and_each_relations_tags(corp, fake_wecom):
    tenant, _ = corp
    run = synced(tenant)
    expected = set(fake_wecom.org.tags.values())
    assert library(tenant) == expected and run.counts["tags"]["created"] == len(expected)
    wecom = {(f.contact.external_userid, f.user.userid): list(f.tag_ids)
             for c in fake_wecom.org.external_contacts.values() for f in c.followers}
    mirrored = {(f.contact.external_userid, f.userid): f.tag_ids
                for f in FollowUser.objects.filter(contact__tenant=tenant).select_related("contact")}
    assert mirrored == wecom and any(mirrored.values())


@pytest.fixture
def wired(live_server, transactional_db, fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("ctagslive")
    config = config_from_fake(tenant, fake_wecom)
    token, aes_key = config.callback_credentials("customers")
    url = live_server.url + reverse("wecom_integration:callback-customers", kwargs={"tenant_id": tenant.pk})
    fake_wecom.register_callback(url, token, aes_key, kind="customers")
    synced(tenant)
    return tenant


def test_tag_callbacks_keep_the_library_and_the_relations_current(wired, fake_wecom):
    tenant = wired
    tag_id, (delivery,) = fake_wecom.admin_add_corp_tag("来源", "直播间")
    assert delivery.ok and ("来源", "直播间") in library(tenant)
    (delivery,) = fake_wecom.admin_rename_corp_tag(tag_id, "视频号直播")
    assert delivery.ok and CustomerTag.objects.get(tenant=tenant, tag_id=tag_id).name == "视频号直播"
    # A member tags a customer in the WeCom client: edit_external_contact, the customer read again.
    userid, external_userid = a_relation(fake_wecom)
    (delivery,) = fake_wecom.member_mark_customer(userid, external_userid, add=[tag_id])
    assert delivery.ok
    follow = FollowUser.objects.get(contact__tenant=tenant, contact__external_userid=external_userid, userid=userid)
    assert tag_id in follow.tag_ids
    (delivery,) = fake_wecom.admin_delete_corp_tag(tag_id)
    assert delivery.ok and not CustomerTag.objects.filter(tenant=tenant, tag_id=tag_id).exists()


@pytest.fixture
def admin_client(corp, client):
    tenant, _ = corp
    client.force_login(make_tenant_admin("ctagadmin", tenant))
    return client


def test_an_admin_marks_a_customers_tags_in_wecom(corp, fake_wecom, admin_client):
    tenant, _ = corp
    synced(tenant)
    userid, external_userid = a_relation(fake_wecom)
    contact = ExternalContact.objects.get(tenant=tenant, external_userid=external_userid)
    follow = contact.follow_users.get(userid=userid)
    page = admin_client.get(reverse("admin:wecom_integration_externalcontact_change", args=[contact.pk]))
    url = reverse("admin:wecom_integration_externalcontact_tags", args=[contact.pk, follow.pk])
    assert url in page.content.decode()
    wanted = sorted(CustomerTag.objects.filter(tenant=tenant).values_list("tag_id", flat=True))[:2]
    response = admin_client.post(url, {"tags": wanted})
    assert response.status_code == 302
    wecom_follow = next(f for f in fake_wecom.org.external_contacts[external_userid].followers
                        if f.user.userid == userid)
    assert sorted(wecom_follow.tag_ids) == wanted
    follow.refresh_from_db()
    assert sorted(follow.tag_ids) == wanted
    assert AuditLog.objects.filter(tenant=tenant, action=AuditLog.Action.CHANGE_CUSTOMER_TAG,
                                   detail__change="mark").count() == 1
    # A tag WeCom deleted meanwhile: WeCom refuses, the form says so, nothing changes.
    gone = sorted(set(CustomerTag.objects.filter(tenant=tenant).values_list("tag_id", flat=True)) - set(wanted))[0]
    fake_wecom.admin_delete_corp_tag(gone)  # no callback URL here: the mirror still lists it
    response = admin_client.post(url, {"tags": [*wanted, gone]})
    assert response.status_code == 200 and "no longer has this tag" in response.content.decode()
    follow.refresh_from_db()
    assert sorted(follow.tag_ids) == wanted


def test_an_admin_adds_renames_and_deletes_customer_tags_in_wecom(corp, fake_wecom, admin_client):
    tenant, _ = corp
    synced(tenant)
    response = admin_client.post(reverse("admin:wecom_integration_customertag_add"), {
        "tenant": tenant.pk, "group_name": "会员等级", "name": "金牌", "names": "银牌\n铜牌",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    added = CustomerTag.objects.filter(tenant=tenant, group_name="会员等级")
    assert sorted(added.values_list("name", flat=True)) == ["金牌", "铜牌", "银牌"]
    assert {("会员等级", n) for n in ("金牌", "银牌", "铜牌")} <= set(fake_wecom.org.tags.values())
    gold = added.get(name="金牌")
    change = reverse("admin:wecom_integration_customertag_change", args=[gold.pk])
    assert admin_client.post(change, {"group_name": "会员等级", "name": "白金"}).status_code == 302
    assert fake_wecom.org.tags[gold.tag_id] == ("会员等级", "白金")
    response = admin_client.post(change, {"group_name": "VIP 等级", "name": "白金"})
    assert response.status_code == 200  # moving a tag needs the group renamed
    renamed = {"group_name": "VIP 等级", "name": "白金", "rename_group": "on"}
    assert admin_client.post(change, renamed).status_code == 302
    assert set(CustomerTag.objects.filter(tenant=tenant, group_id=gold.group_id).values_list("group_name", flat=True)) \
        == {"VIP 等级"}
    response = admin_client.post(reverse("admin:wecom_integration_customertag_delete", args=[gold.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert gold.tag_id not in fake_wecom.org.tags and not CustomerTag.objects.filter(pk=gold.pk).exists()
