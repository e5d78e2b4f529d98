"""The approvals' mirror kept from sys_approval_change callbacks: the latest state wins whatever the order,
a repeated delivery changes nothing, each change sends approval_changed once, a membership approval's
outcome decides the membership once, and approvals stay inside their tenant in the admin and the API."""

import pytest
from django.test import TestCase

from tenants.models import Membership
from tests.approvals.xml import approval_xml
from tests.callbacks.test_callbacks import deliver
from tests.factories import make_config, make_member, make_tenant, make_tenant_admin, make_user
from wecom_integration import signals
from wecom_integration.approvals import mirror
from wecom_integration.events import ApprovalChangeEvent, parse_event
from wecom_integration.models import (
    Approval,
    AuditLog,
    Binding,
    CallbackEvent,
    MembershipApprovalSetting,
    WeComUser,
)

pytestmark = pytest.mark.django_db

T0 = 1_790_000_000


@pytest.fixture
def config():
    return make_config(make_tenant("oa"))


@pytest.fixture
def changes():
    calls = []

    def receiver(sender, **kwargs):
        calls.append((sender, kwargs))

    signals.approval_changed.connect(receiver, dispatch_uid="test-approval-changes")
    yield calls
    signals.approval_changed.disconnect(dispatch_uid="test-approval-changes")


def push(client, config, **kwargs):
    answer = deliver(client, config, "app", approval_xml(config.corp_id, **kwargs))
    assert answer.status_code == 200, answer.content
    return CallbackEvent.objects.latest("id")


def submitted(**extra):
    return {"sp_no": "202612040001", "status": 1, "change": 1, "apply_time": T0, "create_time": T0,
            "steps": [(1, [("boss", 1, "", 0)])], **extra}


def approved(**extra):
    return {"sp_no": "202612040001", "status": 2, "change": 2, "apply_time": T0, "create_time": T0 + 60,
            "steps": [(2, [("boss", 2, "好的", T0 + 60)])], **extra}


def test_the_callback_is_typed_and_keyed_on_the_change():
    first = parse_event(approval_xml("wwcorp", **submitted()))
    assert isinstance(first, ApprovalChangeEvent) and first.kind == "approval"
    assert (first.sp_no, first.sp_status, first.status_change_event) == ("202612040001", 1, 1)
    # A comment added in the same second as the approval is another change, with another key.
    comment = parse_event(approval_xml("wwcorp", **approved(change=10, create_time=T0 + 60,
                                                             comments=[("boss", T0 + 60, "记得报销")])))
    assert comment.dedupe_key != parse_event(approval_xml("wwcorp", **approved())).dedupe_key


def test_a_callback_creates_the_approval_with_every_decision(client, config, changes):
    event = push(client, config, **submitted(notifyers=["hr"]))
    assert event.status == CallbackEvent.Status.HANDLED
    approval = Approval.objects.get(tenant=config.tenant, sp_no="202612040001")
    assert approval.status == Approval.Status.PENDING and approval.applicant == "alice"
    assert approval.records == [{"status": 1, "approver_attr": 1,
                                 "details": [{"approver": "boss", "speech": "", "status": 1, "time": 0}]}]
    assert approval.notifyers == ["hr"]
    push(client, config, **approved())
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED
    assert approval.records[0]["details"][0] == {"approver": "boss", "speech": "好的", "status": 2, "time": T0 + 60}
    assert [(kwargs["previous_status"], kwargs["approval"].status, kwargs["source"]) for _s, kwargs in changes] == [
        (None, 1, "callback"), (1, 2, "callback")
    ]
    assert all(sender is ApprovalChangeEvent for sender, _kwargs in changes)


def test_out_of_order_and_repeated_callbacks_keep_the_latest_state_and_record_a_change_once(client, config, changes):
    push(client, config, **approved())
    push(client, config, **submitted())  # late: older than what the mirror holds
    push(client, config, **approved(create_time=T0 + 61))  # WeCom's second delivery of the same change
    approval = Approval.objects.get(sp_no="202612040001")
    assert approval.status == Approval.Status.APPROVED
    assert len(changes) == 1
    assert CallbackEvent.objects.filter(tenant=config.tenant).count() == 3
    assert set(CallbackEvent.objects.values_list("status", flat=True)) == {CallbackEvent.Status.HANDLED}


def test_a_revocation_after_approval_outranks_the_approval_it_revokes(client, config):
    revoked = approved(status=6, change=8, create_time=T0 + 120)
    push(client, config, **revoked)
    push(client, config, **approved())  # the approval itself arrives last
    assert Approval.objects.get(sp_no="202612040001").status == Approval.Status.REVOKED_AFTER_APPROVAL


def test_apply_is_idempotent_and_never_goes_back():
    tenant = make_tenant("pure")
    late = mirror.from_callback(parse_event(approval_xml("ww", **approved())).info)
    early = mirror.from_callback(parse_event(approval_xml("ww", **submitted())).info)
    assert mirror.apply(tenant.pk, late, observed=T0 + 60).changed
    assert not mirror.apply(tenant.pk, late, observed=T0 + 60).changed
    assert not mirror.apply(tenant.pk, early, observed=T0 + 999).changed
    assert Approval.objects.get(tenant=tenant).status == 2


# Membership approval -----------------------------------------------------------------------------------


@pytest.fixture
def pending_member(config):
    MembershipApprovalSetting.objects.create(tenant=config.tenant, template_id="tpl-join", approvers="boss")
    user = make_user("zhang")
    make_member(user, config.tenant, status=Membership.Status.PENDING)
    member = WeComUser.objects.create(tenant=config.tenant, userid="zhangsan", name="张三")
    Binding.objects.create(tenant=config.tenant, user=user, wecom_user=member)
    Approval.objects.create(tenant=config.tenant, sp_no="202612040001", template_id="tpl-join", applicant="zhangsan",
                            purpose=Approval.Purpose.MEMBERSHIP, subject_user=user, version=[T0, 0, 0])
    return user


def membership(user, tenant):
    return Membership.objects.get(user=user, tenant=tenant)


def test_an_approved_joining_request_makes_the_member_active_once(client, config, pending_member):
    push(client, config, **approved(applicant="zhangsan"))
    assert membership(pending_member, config.tenant).status == Membership.Status.ACTIVE
    record = AuditLog.objects.get(tenant=config.tenant, action=AuditLog.Action.APPROVE)
    assert record.target_user == pending_member and record.actor is None
    assert record.detail["sp_no"] == "202612040001" and record.detail["approvers"] == ["boss"]
    assert record.detail["via"] == "wecom_approval"
    assert Approval.objects.get(sp_no="202612040001").settled
    # A revocation after approval arrives later: the membership was decided once and stays.
    push(client, config, **approved(status=6, change=8, create_time=T0 + 300, applicant="zhangsan"))
    assert membership(pending_member, config.tenant).status == Membership.Status.ACTIVE
    assert AuditLog.objects.filter(action__in=[AuditLog.Action.APPROVE, AuditLog.Action.REJECT]).count() == 1


@pytest.mark.parametrize("status,change", [(3, 3), (4, 6)])
def test_a_rejected_or_revoked_joining_request_rejects_the_member(client, config, pending_member, status, change):
    push(client, config, **approved(status=status, change=change, applicant="zhangsan",
                                    steps=[(status, [("boss", 3 if status == 3 else 1, "不认识", T0 + 60)])]))
    assert membership(pending_member, config.tenant).status == Membership.Status.REJECTED
    assert AuditLog.objects.filter(action=AuditLog.Action.REJECT, target_user=pending_member).count() == 1


def test_a_member_the_admin_decided_first_is_left_as_the_admin_left_it(client, config, pending_member):
    from tenants.services import decide_memberships

    admin = make_tenant_admin("admin1", config.tenant)
    decide_memberships(Membership.objects.filter(user=pending_member), Membership.Status.REJECTED, actor=admin)
    push(client, config, **approved(applicant="zhangsan"))
    assert membership(pending_member, config.tenant).status == Membership.Status.REJECTED
    assert Approval.objects.get(sp_no="202612040001").settled
    assert not AuditLog.objects.filter(action=AuditLog.Action.APPROVE).exists()


# Tenant isolation -------------------------------------------------------------------------------------


def test_approvals_stay_inside_their_tenant_in_the_admin_and_the_api(client, config):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    push(client, config, **approved())
    other = make_config(make_tenant("other"))
    with TestCase.captureOnCommitCallbacks(execute=True):
        deliver(client, other, "app", approval_xml(other.corp_id, **approved(sp_no="999900000001")))
    mine = Approval.objects.get(tenant=config.tenant)
    theirs = Approval.objects.get(tenant=other.tenant)

    admin = make_tenant_admin("oa_admin", config.tenant)
    token = Token.objects.get_or_create(user=admin)[0].key
    api = APIClient()

    def get(path, tenant_id):
        return api.get(path, HTTP_X_ACCESS_TOKEN=token, HTTP_X_TENANT_ID=str(tenant_id))

    listed = get("/api/wecom/approvals/", config.tenant_id)
    assert listed.status_code == 200
    assert [row["sp_no"] for row in listed.json()["results"]] == [mine.sp_no]
    assert get("/api/wecom/approvals/?status=2", config.tenant_id).json()["count"] == 1
    assert get("/api/wecom/approvals/?status=3", config.tenant_id).json()["count"] == 0
    assert get("/api/wecom/approvals/?applicant=alice", config.tenant_id).json()["count"] == 1
    detail = get(f"/api/wecom/approvals/{mine.sp_no}/", config.tenant_id).json()
    assert detail["records"][0]["details"][0]["speech"] == "好的"
    assert get(f"/api/wecom/approvals/{theirs.sp_no}/", config.tenant_id).status_code == 404
    assert get("/api/wecom/approvals/", other.tenant_id).status_code == 403

    client.force_login(admin)
    page = client.get("/admin/wecom_integration/approval/")
    assert page.status_code == 200
    assert mine.sp_no in page.content.decode() and theirs.sp_no not in page.content.decode()
    assert client.get(f"/admin/wecom_integration/approval/{theirs.pk}/change/").status_code == 403
    timeline = client.get(f"/admin/wecom_integration/approval/{mine.pk}/change/").content.decode()
    assert "wecom-timeline" in timeline and "好的" in timeline and "boss" in timeline
