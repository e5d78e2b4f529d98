"""The customer sync against the fake WeCom: every follow user's customers, idempotent, all or nothing."""

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tests.factories import config_from_fake, make_tenant
from wecom_integration.customers import sync as customer_sync
from wecom_integration.customers.services import contact_fingerprint
from wecom_integration.customers.tasks import run_customer_sync
from wecom_integration.directory import sync
from wecom_integration.models import ExternalContact, FollowUser, SyncRun


@pytest.fixture
def tenant(db, fake_wecom):
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base}):
        tenant = make_tenant("cust")
        config_from_fake(tenant, fake_wecom)
        # The members whose customers are fetched come from the contact mirror.
        sync.execute_contact_run(sync.create_run(tenant).pk)
        yield tenant


def run_customers(tenant, **kwargs):
    run = sync.create_run(tenant, SyncRun.Kind.CUSTOMERS)
    return customer_sync.execute_customer_run(run.pk, **kwargs)


def state(tenant):
    contacts = sorted(
        ExternalContact.objects.filter(tenant=tenant).values_list(
            "external_userid", "name", "type", "corp_name", "removed", "fingerprint"
        )
    )
    follows = sorted(
        FollowUser.objects.filter(contact__tenant=tenant).values_list(
            "contact__external_userid", "userid", "remark", "add_time", "state", "removed"
        )
    )
    return contacts, follows


def expected_relations(org):
    return {
        (c.external_userid, f.user.userid): f
        for c in org.external_contacts.values()
        for f in c.followers
    }


def test_customer_sync_fetches_every_relation(tenant, fake_wecom):
    org = fake_wecom.org
    run = run_customers(tenant)

    assert run.status == SyncRun.Status.SUCCEEDED, run.errors
    assert run.kind == SyncRun.Kind.CUSTOMERS
    contacts, follows = state(tenant)
    assert {c[0] for c in contacts} == set(org.external_contacts)
    relations = expected_relations(org)
    assert {(f[0], f[1]) for f in follows} == set(relations)
    key, follow = next(iter(relations.items()))
    row = FollowUser.objects.get(contact__external_userid=key[0], userid=key[1])
    assert (row.remark, row.add_time, row.state) == (follow.remark, follow.createtime, follow.state)
    customer = ExternalContact.objects.get(tenant=tenant, external_userid=key[0])
    assert customer.name == follow.contact.name
    assert customer.fingerprint == contact_fingerprint({n: getattr(customer, n) for n in ("name", "type", "avatar",
                                                                                           "gender", "corp_name",
                                                                                           "unionid")})
    assert run.counts["fetched_follow_users"] == len(relations)
    assert run.done == run.total == run.counts["members"] // 100 + (1 if run.counts["members"] % 100 else 0)


def test_second_customer_sync_writes_nothing(tenant):
    run_customers(tenant)
    before = state(tenant)

    with CaptureQueriesContext(connection) as queries:
        again = run_customers(tenant)

    assert again.counts["rows_written"] == 0
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE")
              and ("externalcontact" in q["sql"] or "followuser" in q["sql"])]
    assert writes == []
    assert state(tenant) == before


def test_ended_relations_and_lost_customers_are_marked_not_deleted(tenant, fake_wecom):
    org = fake_wecom.org
    run_customers(tenant)
    shared = next(c for c in org.external_contacts.values() if len(c.followers) >= 1)
    follow = shared.followers[0]
    with org.lock:
        follow.remark = "新备注"
        # A customer who drops every member is gone from the corp.
        lost = next(c for c in org.external_contacts.values() if c is not shared)
        for f in list(lost.followers):
            f.user.follows.remove(f)
            lost.followers.remove(f)
        del org.external_contacts[lost.external_userid]

    run = run_customers(tenant)

    assert run.status == SyncRun.Status.SUCCEEDED
    row = FollowUser.objects.get(contact__external_userid=shared.external_userid, userid=follow.user.userid)
    assert row.remark == "新备注"
    gone = ExternalContact.objects.get(tenant=tenant, external_userid=lost.external_userid)
    assert gone.removed and gone.removed_at is not None
    assert gone.follow_users.exists() and not gone.follow_users.filter(removed=False).exists()
    assert run.counts["customers"]["removed"] == 1


def test_failed_customer_fetch_changes_nothing(tenant, fake_wecom):
    run_customers(tenant)
    before = state(tenant)
    with fake_wecom.org.lock:
        for contact in fake_wecom.org.external_contacts.values():
            contact.name = "should not land"
    fake_wecom.set_faults(error_rate=0.5, errcodes=[40058], paths=["externalcontact/batch/get_by_user"], seed=1)

    run = run_customers(tenant)

    assert run.status == SyncRun.Status.FAILED
    assert run.errors[-1]["errcode"] == 40058
    assert state(tenant) == before


def test_customer_task_runs_through_celery(tenant):
    run = sync.create_run(tenant, SyncRun.Kind.CUSTOMERS)
    assert run_customer_sync.delay(run.pk).get() == SyncRun.Status.SUCCEEDED
