"""Members linked by unionid (issue 18 item 3, seed 002's 会员同步注册): a new customer whose WeChat unionid
the host knows is linked to that account, or given a new member account, as the tenant's setting says;
written to the audit log; nothing happens without the setting."""

import pytest
from django.urls import reverse

from tests.factories import config_from_fake, make_tenant, make_user
from wecom_integration.customers import sync as customer_sync
from wecom_integration.directory import sync
from wecom_integration.login.adapter import DefaultWeComAdapter
from wecom_integration.models import AuditLog, ExternalContact, SyncRun

pytestmark = pytest.mark.django_db

KNOWN = {}


class UnionidAdapter(DefaultWeComAdapter):
    """A host that keeps its members' unionids elsewhere (here: a dict standing in for its profile table)."""

    def account_for_unionid(self, tenant, unionid):
        return KNOWN.get(unionid)


@pytest.fixture
def host_adapter(settings):
    KNOWN.clear()
    return settings


def customer_sync_run(tenant):
    return customer_sync.execute_customer_run(sync.create_run(tenant, SyncRun.Kind.CUSTOMERS, None).pk)


@pytest.fixture
def tenant(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base, "ADAPTER": f"{__name__}.UnionidAdapter"}
    tenant = make_tenant("members")
    config_from_fake(tenant, fake_wecom)
    sync.execute_contact_run(sync.create_run(tenant, SyncRun.Kind.CONTACTS, None).pk)
    return tenant


def wechat_customers(fake):
    return [c for c in fake.org.external_contacts.values() if c.unionid]


def test_the_sync_links_customers_the_host_knows(tenant, fake_wecom, host_adapter):
    tenant.wecom_config.customer_member_link = "link"
    tenant.wecom_config.save()
    known = wechat_customers(fake_wecom)[0]
    member = make_user("vip-member")
    KNOWN[known.unionid] = member
    run = customer_sync_run(tenant)
    assert run.counts["members_linked"] == {"linked": 1, "created": 0}
    contact = ExternalContact.objects.get(tenant=tenant, external_userid=known.external_userid)
    assert contact.unionid == known.unionid and contact.linked_user == member
    record = AuditLog.objects.get(tenant=tenant, action=AuditLog.Action.LINK_CUSTOMER)
    assert record.target_user == member and record.detail["external_userid"] == known.external_userid
    assert ExternalContact.objects.filter(tenant=tenant, linked_user__isnull=False).count() == 1
    # Linked once: the next sync links nothing again.
    assert customer_sync_run(tenant).counts["members_linked"] == {"linked": 0, "created": 0}


def test_create_gives_every_wechat_customer_a_member_account(tenant, fake_wecom, host_adapter):
    tenant.wecom_config.customer_member_link = "create"
    tenant.wecom_config.save()
    run = customer_sync_run(tenant)
    wechat = wechat_customers(fake_wecom)
    assert run.counts["members_linked"] == {"linked": 0, "created": len(wechat)}
    accounts = ExternalContact.objects.filter(tenant=tenant).exclude(linked_user=None)
    assert accounts.count() == len(wechat)
    user = accounts.first().linked_user
    assert user.get_username().startswith("memberswx-") and not user.has_usable_password()
    assert not user.is_staff


def test_without_the_setting_nothing_is_linked(tenant, fake_wecom, host_adapter):
    KNOWN[wechat_customers(fake_wecom)[0].unionid] = make_user("someone")
    run = customer_sync_run(tenant)
    assert run.counts["members_linked"] == {"linked": 0, "created": 0}
    assert not ExternalContact.objects.exclude(linked_user=None).exists()


def test_a_new_customer_from_a_callback_is_linked(live_server, transactional_db, fake_wecom, settings):
    KNOWN.clear()
    settings.WECOM = {"API_BASE": fake_wecom.api_base, "ADAPTER": f"{__name__}.UnionidAdapter"}
    tenant = make_tenant("memberslive")
    config = config_from_fake(tenant, fake_wecom, customer_member_link="link")
    token, aes_key = config.callback_credentials("customers")
    url = live_server.url + reverse("wecom_integration:callback-customers", kwargs={"tenant_id": tenant.pk})
    fake_wecom.register_callback(url, token, aes_key, kind="customers")
    member = make_user("wx-member")
    owner = next(iter(fake_wecom.org.users))
    external_userid, [delivery] = fake_wecom.add_external_contact(owner, "新客户", type=1)
    assert delivery.status == 200
    unionid = fake_wecom.org.external_contacts[external_userid].unionid
    assert unionid  # a WeChat user's customer carries one
    contact = ExternalContact.objects.get(tenant=tenant, external_userid=external_userid)
    assert contact.unionid == unionid and contact.linked_user is None  # the host did not know it yet
    KNOWN[unionid] = member
    fake_wecom.add_external_contact(next(u for u in fake_wecom.org.users if u != owner), "新客户",
                                    external_userid=external_userid)
    contact.refresh_from_db()
    assert contact.linked_user == member
