"""Contact tags (issue 18 item 5): the fake's tag API held to WeCom's rules, the mirror kept by the contact sync
(old corps and the 2022 rules) and by update_tag callbacks, changes made from the admin through WeCom, and
sending to tags — all over real HTTP against the fake."""

import pytest
from django.urls import reverse

from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration import signals
from wecom_integration.client import WeComError, client_for
from wecom_integration.directory import sync
from wecom_integration.directory import tags as tag_services
from wecom_integration.models import AuditLog, ContactTag, SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def corp(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("tags")
    config = config_from_fake(tenant, fake_wecom)
    return tenant, config


def members(fake, n, start=0):
    return [u.userid for u in list(fake.org.users.values())[start : start + n]]


def mirror(tenant):
    return {
        t.tagid: (t.name, sorted(t.members.values_list("userid", flat=True)), t.departments)
        for t in ContactTag.objects.filter(tenant=tenant)
    }


def errcode(call):
    with pytest.raises(WeComError) as caught:
        call()
    return caught.value.errcode


# The fake holds to WeCom's rules -------------------------------------------------------------------------


def test_the_fake_refuses_tag_changes_as_wecom_does(corp, fake_wecom):
    _, config = corp
    contacts, app = client_for(config, "contacts"), client_for(config, "app")
    tagid = contacts.tag.create("销售")
    assert errcode(lambda: contacts.tag.create("销售")) == 40071  # UserTag Name Already Exist
    assert errcode(lambda: contacts.tag.create("其他", tagid=tagid)) == 40068
    assert errcode(lambda: contacts.tag.create("长" * 33)) == 40058
    # A tag belongs to its creator: the app may not change one the contact secret created, but its own.
    assert errcode(lambda: app.tag.update(tagid, "改名")) == 60011
    own = app.tag.create("应用标签")
    app.tag.update(own, "应用标签2")
    # Some members unknown: the rest are added, the unknown reported; all unknown: 40070 / 40031.
    known = members(fake_wecom, 2)
    answer = contacts.tag.add_users(tagid, [*known, "nobody"], [1, 99999])
    assert answer["invalidlist"] == "nobody" and answer["invalidparty"] == [99999]
    assert errcode(lambda: contacts.tag.add_users(tagid, ["nobody"])) == 40070
    assert errcode(lambda: contacts.tag.del_users(tagid, ["nobody"])) == 40031
    assert errcode(lambda: contacts.tag.add_users(tagid)) == 40058
    got = contacts.tag.get(tagid)
    assert [u["userid"] for u in got["userlist"]] == known and got["partylist"] == [1]
    assert {t["tagname"] for t in contacts.tag.list()} == {"销售", "应用标签2"}
    contacts.tag.delete(tagid)
    assert errcode(lambda: contacts.tag.get(tagid)) == 40068


def test_under_the_2022_rules_the_contact_secret_lists_tags_but_the_app_reads_them(make_fake_wecom, settings):
    fake = make_fake_wecom(users=30, departments=4, seed=2, restricted=True)
    settings.WECOM = {"API_BASE": fake.api_base}
    config = config_from_fake(make_tenant("tags2022"), fake)
    seen, hidden = members(fake, 2)
    fake.org.set_visible_range(users=[seen])
    tagid = fake.create_contact_tag("管理层", [seen, hidden])
    contacts, app = client_for(config, "contacts"), client_for(config, "app")
    assert [t["tagid"] for t in contacts.tag.list()] == [tagid]
    assert errcode(lambda: contacts.tag.get(tagid)) == 48009
    assert [u["userid"] for u in app.tag.get(tagid)["userlist"]] == [seen]  # the app's visible range only


# The mirror --------------------------------------------------------------------------------------------


def test_the_contact_sync_mirrors_tags_and_follows_their_changes(corp, fake_wecom):
    tenant, _ = corp
    first = members(fake_wecom, 3)
    sales = fake_wecom.create_contact_tag("销售", first[:2], parties=[2])
    board = fake_wecom.create_contact_tag("董事会", first[2:])
    run = sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
    assert run.counts["tags"] == {"tags": 2, "created": 2, "updated": 0, "deleted": 0, "members_added": 3,
                                  "members_removed": 0}
    assert mirror(tenant) == {sales: ("销售", sorted(first[:2]), [2]), board: ("董事会", [first[2]], [])}
    # In WeCom: a tag renamed, a member moved, a tag deleted; the next sync brings the mirror level.
    admin = client_for(tenant.wecom_config, "contacts")
    admin.tag.update(sales, "大客户销售")
    admin.tag.del_users(sales, [first[0]])
    admin.tag.delete(board)
    run = sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
    assert run.counts["tags"]["deleted"] == 1 and run.counts["tags"]["members_removed"] == 1
    assert mirror(tenant) == {sales: ("大客户销售", [first[1]], [2])}


def test_tags_read_by_the_app_secret_under_the_2022_rules(make_fake_wecom, settings):
    fake = make_fake_wecom(users=30, departments=4, seed=2, restricted=True)
    settings.WECOM = {"API_BASE": fake.api_base}
    tenant = make_tenant("tags2022sync")
    config_from_fake(tenant, fake)
    tagid = fake.create_contact_tag("管理层", members(fake, 2))
    run = sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.REVIEW), run.errors
    assert mirror(tenant) == {tagid: ("管理层", sorted(members(fake, 2)), [])}


def test_tags_wecom_will_not_give_leave_their_mirror_and_the_members_sync_alone(corp, fake_wecom):
    tenant, _ = corp
    ContactTag.objects.create(tenant=tenant, tagid=77, name="旧标签")
    fake_wecom.create_contact_tag("管理层", members(fake_wecom, 2))
    fake_wecom.set_faults(error_rate=1.0, errcodes=(60011,), paths=["tag/get"])
    run = sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.REVIEW), run.errors
    assert run.counts["tags"]["error"].startswith("60011")
    assert run.counts["fetched_users"] == 60
    assert mirror(tenant) == {77: ("旧标签", [], [])}


@pytest.fixture
def wired(live_server, transactional_db, fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("tagslive")
    config = config_from_fake(tenant, fake_wecom)
    token, aes_key = config.callback_credentials("contacts")
    url = live_server.url + reverse("wecom_integration:callback-contacts", kwargs={"tenant_id": tenant.pk})
    fake_wecom.register_callback(url, token, aes_key, kind="contacts")
    return tenant


def test_update_tag_callbacks_keep_the_mirror_current(wired, fake_wecom):
    tenant = wired
    a, b, c = members(fake_wecom, 3)
    tagid = fake_wecom.create_contact_tag("项目组", [a])
    seen = []

    def receiver(sender, **kwargs):
        seen.append(kwargs["change_type"])

    signals.contact_changed.connect(receiver, dispatch_uid="test-tags")
    try:
        # First news of the tag: read whole from WeCom.
        (delivery,) = fake_wecom.change_contact_tag(tagid, add_users=[b], add_parties=[3])
        assert delivery.ok, delivery
        assert mirror(tenant) == {tagid: ("项目组", sorted([a, b]), [3])}
        # Then only what the event says changed.
        (delivery,) = fake_wecom.change_contact_tag(tagid, add_users=[c], del_users=[a], del_parties=[3])
        assert delivery.ok
        assert mirror(tenant) == {tagid: ("项目组", sorted([b, c]), [])}
    finally:
        signals.contact_changed.disconnect(dispatch_uid="test-tags")
    assert seen == ["update_tag", "update_tag"]


# The admin ---------------------------------------------------------------------------------------------


@pytest.fixture
def admin_client_of(client):
    def login(tenant):
        user = make_tenant_admin("tagadmin", tenant)
        client.force_login(user)
        return client

    return login


def test_an_admin_creates_fills_renames_and_deletes_a_tag_in_wecom(corp, fake_wecom, admin_client_of):
    tenant, _ = corp
    client = admin_client_of(tenant)
    a, b = members(fake_wecom, 2)
    response = client.post(reverse("admin:wecom_integration_contacttag_add"), {
        "tenant": tenant.pk, "name": "华东区", "add_users": f"{a}\nnobody", "add_departments": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    (tag,) = ContactTag.objects.filter(tenant=tenant)
    wecom = fake_wecom.contact_tags[tag.tagid]
    assert wecom.name == "华东区" and list(wecom.users) == [a]
    assert mirror(tenant) == {tag.tagid: ("华东区", [a], [])}  # "nobody", refused by WeCom, is not mirrored
    page = client.get(reverse("admin:wecom_integration_contacttag_changelist"))
    assert "nobody" in page.content.decode()  # the warning names who WeCom did not take

    change = reverse("admin:wecom_integration_contacttag_change", args=[tag.pk])
    response = client.post(change, {"name": "华东大区", "add_users": b, "remove_users": a,
                                    "add_departments": "2", "remove_departments": ""})
    assert response.status_code == 302
    assert (wecom.name, list(wecom.users), list(wecom.parties)) == ("华东大区", [b], [2])
    assert mirror(tenant) == {tag.tagid: ("华东大区", [b], [2])}

    # A name WeCom refuses: said on the form, nothing changed anywhere.
    fake_wecom.create_contact_tag("华南区")
    response = client.post(change, {"name": "华南区", "add_users": "", "remove_users": "",
                                    "add_departments": "", "remove_departments": ""})
    assert response.status_code == 200 and "already has a tag of that name" in response.content.decode()
    assert wecom.name == "华东大区" and ContactTag.objects.get(pk=tag.pk).name == "华东大区"

    response = client.post(reverse("admin:wecom_integration_contacttag_delete", args=[tag.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert tag.tagid not in fake_wecom.contact_tags and not ContactTag.objects.filter(pk=tag.pk).exists()
    changes = list(AuditLog.objects.filter(tenant=tenant, action=AuditLog.Action.CHANGE_TAG)
                   .order_by("created_at", "pk").values_list("detail__change", flat=True))
    assert changes == ["create", "members", "rename", "members", "delete"]


def test_the_admin_reads_tags_now_and_another_tenants_tag_is_out_of_reach(corp, fake_wecom, admin_client_of):
    tenant, _ = corp
    client = admin_client_of(tenant)
    tagid = fake_wecom.create_contact_tag("客服", members(fake_wecom, 1))
    response = client.post(reverse("admin:wecom_integration_contacttag_sync"), {"tenant": tenant.pk})
    assert response.status_code == 302
    assert set(mirror(tenant)) == {tagid}
    other = make_tenant("othertags")
    foreign = ContactTag.objects.create(tenant=other, tagid=5, name="别家")
    assert client.get(reverse("admin:wecom_integration_contacttag_change", args=[foreign.pk])).status_code == 403
    response = client.post(reverse("admin:wecom_integration_contacttag_sync"), {"tenant": other.pk})
    assert response.status_code == 200 and not ContactTag.objects.filter(tenant=other).exclude(pk=foreign.pk)


def test_a_deletion_wecom_refuses_deletes_nothing_from_the_page_or_the_list(corp, fake_wecom, admin_client_of):
    tenant, _ = corp
    client = admin_client_of(tenant)
    tagid = fake_wecom.create_contact_tag("财务", members(fake_wecom, 1))
    tag_services.sync_contact_tags(tenant)
    tag = ContactTag.objects.get(tenant=tenant, tagid=tagid)
    fake_wecom.set_faults(error_rate=1.0, errcodes=(60011,), paths=["tag/delete"])
    response = client.post(reverse("admin:wecom_integration_contacttag_delete", args=[tag.pk]), {"post": "yes"})
    assert response.status_code == 302
    response = client.post(reverse("admin:wecom_integration_contacttag_changelist"),
                           {"action": "delete_selected", "_selected_action": [tag.pk], "post": "yes"}, follow=True)
    assert response.status_code == 200 and response.context["messages"]
    assert tagid in fake_wecom.contact_tags and ContactTag.objects.filter(pk=tag.pk).exists()
    assert not AuditLog.objects.filter(tenant=tenant, detail__change="delete").exists()
