"""Approvals end to end over real HTTP: the client against the fake WeCom's OA API, the fake's approvers
deciding as in the WeCom app and its signed sys_approval_change callbacks reaching the live server, the
reconciliation job settling an approval whose callback was lost, and joining requests decided in WeCom."""

import pytest
from django.urls import reverse

from tenants.models import Membership
from tests.factories import config_from_fake, make_member, make_tenant, make_user
from wecom_integration.approvals import services
from wecom_integration.client import WeComError, client_for
from wecom_integration.directory import bindings
from wecom_integration.models import Approval, AuditLog, MembershipApprovalSetting, WeComUser
from wecom_integration.testing.fake.approval import control

LEAVE = "C4NyVwvTsSLsPNxKT7ZhjQsZmTKQ3SHnz9gxaY4cH"
JOIN = "3Tka1eD6v6JfzhDMqPd3aMkFdxqtJMc2ZRioeFXkaaa"

pytestmark = pytest.mark.django_db


@pytest.fixture
def wired(live_server, transactional_db, fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base, "BUSY_RETRIES": 0, "BUSY_BACKOFF": 0}
    config = config_from_fake(make_tenant("oahttp"), fake_wecom)
    token, aes_key = config.callback_credentials("app")
    url = live_server.url + reverse("wecom_integration:callback-app", kwargs={"tenant_id": config.tenant_id})
    fake_wecom.register_callback(url, token, aes_key, kind="app")
    for userid, user in fake_wecom.org.users.items():
        WeComUser.objects.create(tenant=config.tenant, userid=userid, name=user.name)
    return config


def people(fake, n):
    return list(fake.org.users)[:n]


def leave_contents(days="2"):
    return [{"id": "Text-1", "value": "家事"}, {"id": "Number-1", "value": {"new_number": days}}]


def test_the_client_reads_templates_submits_pages_and_details(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    config = config_from_fake(make_tenant("oaclient"), fake_wecom)
    client = client_for(config, "approvals")
    template = client.approval.get_template_detail(LEAVE)
    assert [c["property"]["id"] for c in template["template_content"]["controls"]][:2] == ["Text-1", "Number-1"]
    applicant, boss = people(fake_wecom, 2)
    contents = [{"control": "Text", "id": "Text-1", "value": {"text": "x"}},
                {"control": "Number", "id": "Number-1", "value": {"new_number": "1"}}]
    numbers = [client.approval.apply(creator_userid=applicant, template_id=LEAVE, contents=contents,
                                     approvers=[{"attr": 1, "userid": [boss]}]) for _ in range(105)]
    now = int(fake_wecom.now())
    listed = list(client.approval.iter_sp_nos(now - 40 * 86400, now + 10))  # two ranges, two pages
    assert listed == sorted(numbers)
    detail = client.approval.get_detail(numbers[0])
    assert detail["sp_status"] == 1 and detail["applyer"]["userid"] == applicant
    with pytest.raises(ValueError):
        client.approval.get_sp_nos(now - 32 * 86400, now)
    with pytest.raises(WeComError) as unknown:
        client.approval.get_template_detail("no-such-template")
    assert unknown.value.errcode == 301025


@pytest.mark.parametrize("contents,problem", [
    ([{"id": "Number-1", "value": {"new_number": "2"}}], "Text-1"),  # required control missing
    ([{"id": "Text-1", "value": "x"}, {"id": "Number-1", "value": {"new_number": "2"}}, {"id": "Nope", "value": {}}],
     "Nope"),
])
def test_contents_are_checked_against_the_template_before_wecom_is_called(wired, fake_wecom, contents, problem):
    applicant, boss = people(fake_wecom, 2)
    before = fake_wecom.calls["oa/applyevent"]
    with pytest.raises(services.ApprovalInputError) as refused:
        services.submit(wired, services.Submission(creator=applicant, template_id=LEAVE, contents=contents,
                                                   approvers=[boss]))
    assert problem in refused.value.errors
    assert fake_wecom.calls["oa/applyevent"] == before
    assert not Approval.objects.exists()


def test_the_fake_refuses_what_wecom_refuses(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    client = client_for(config_from_fake(make_tenant("oastrict"), fake_wecom), "app")
    applicant, boss = people(fake_wecom, 2)
    good = [{"control": "Text", "id": "Text-1", "value": {"text": "x"}},
            {"control": "Number", "id": "Number-1", "value": {"new_number": "1"}}]
    cases = [
        dict(creator_userid="ghost", template_id=LEAVE, contents=good, approvers=[{"attr": 1, "userid": [boss]}]),
        dict(creator_userid=applicant, template_id=LEAVE, contents=good, approvers=[{"attr": 1, "userid": ["ghost"]}]),
        dict(creator_userid=applicant, template_id="nope", contents=good, approvers=[{"attr": 1, "userid": [boss]}]),
        dict(creator_userid=applicant, template_id=LEAVE, contents=good[:1], approvers=[{"attr": 1, "userid": [boss]}]),
        dict(creator_userid=applicant, template_id=LEAVE,
             contents=[good[0], {"control": "Number", "id": "Number-1", "value": {"new_number": "many"}}],
             approvers=[{"attr": 1, "userid": [boss]}]),
    ]
    codes = []
    for case in cases:
        with pytest.raises(WeComError) as refused:
            client.approval.apply(**case)
        codes.append(refused.value.errcode)
    assert codes == [301025] * 5
    assert not fake_wecom.approvals


def test_submit_approve_and_the_timeline(wired, fake_wecom, client):
    applicant, boss, cfo = people(fake_wecom, 3)
    approval = services.submit(wired, services.Submission(
        creator=applicant, template_id=LEAVE, contents=leave_contents(), approvers=[boss], notifyers=[cfo]))
    assert approval.status == Approval.Status.PENDING and approval.sp_name == "请假"
    [delivery] = fake_wecom.approve_approval(approval.sp_no, boss, "同意")
    assert delivery.status == 200
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED
    assert approval.records[0]["details"][0]["speech"] == "同意" and approval.notifyers == [cfo]
    assert approval.contents[0]["value"] == {"text": "家事"}  # kept from the submission


def test_all_sign_needs_every_approver_and_a_rejection_ends_it(wired, fake_wecom):
    applicant, first, second = people(fake_wecom, 3)
    approval = services.submit(wired, services.Submission(
        creator=applicant, template_id=LEAVE, contents=leave_contents(), approvers=[first, second], approver_attr=2))
    fake_wecom.approve_approval(approval.sp_no, first)
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    fake_wecom.reject_approval(approval.sp_no, second, "不行")
    approval.refresh_from_db()
    assert approval.status == Approval.Status.REJECTED


def test_a_lost_callback_is_settled_by_the_reconciliation(wired, fake_wecom):
    applicant, boss = people(fake_wecom, 2)
    approval = services.submit(wired, services.Submission(
        creator=applicant, template_id=LEAVE, contents=leave_contents(), approvers=[boss]))
    fake_wecom.approve_approval(approval.sp_no, boss, push=False)  # WeCom's callback never arrives
    fake_wecom.comment_approval(approval.sp_no, applicant, "谢谢", push=False)
    approval.refresh_from_db()
    assert approval.status == Approval.Status.PENDING
    counts = services.reconcile(wired)
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED and approval.comments[0]["content"] == "谢谢"
    assert counts == {"listed": 1, "fetched": 1, "changed": 1, "failed": 0}
    # Final approvals are not fetched again.
    assert services.reconcile(wired)["fetched"] == 0


def test_a_template_change_is_seen_by_the_next_submission(wired, fake_wecom, settings):
    applicant, boss = people(fake_wecom, 2)
    services.submit(wired, services.Submission(creator=applicant, template_id=LEAVE, contents=leave_contents(),
                                               approvers=[boss]))
    controls = fake_wecom.approval_templates[LEAVE]["controls"] + [control("Text", "Text-2", "交接人", 1)]
    fake_wecom.change_approval_template(LEAVE, controls)
    # The cached template still lacks Text-2: WeCom refuses, the template is fetched again, the admin is told.
    with pytest.raises(services.ApprovalInputError) as refused:
        services.submit(wired, services.Submission(creator=applicant, template_id=LEAVE, contents=leave_contents(),
                                                   approvers=[boss]))
    assert "Text-2" in refused.value.errors
    ok = services.submit(wired, services.Submission(
        creator=applicant, template_id=LEAVE, contents=[*leave_contents(), {"id": "Text-2", "value": "小王"}],
        approvers=[boss]))
    assert ok.status == Approval.Status.PENDING


# Joining requests decided in WeCom ---------------------------------------------------------------------


@pytest.fixture
def joining(wired, fake_wecom):
    applicant, boss = people(fake_wecom, 2)
    MembershipApprovalSetting.objects.create(tenant=wired.tenant, template_id=JOIN, approvers=boss)
    user = make_user("newcomer", first_name="新人")
    bindings.bind(wired.tenant, user, WeComUser.objects.get(tenant=wired.tenant, userid=applicant))
    return user, applicant, boss


def state(user, tenant):
    return Membership.objects.get(user=user, tenant=tenant).status


def test_a_pending_member_becomes_active_when_the_approver_approves_in_wecom(wired, fake_wecom, joining):
    user, applicant, boss = joining
    approval = Approval.objects.get(tenant=wired.tenant, purpose=Approval.Purpose.MEMBERSHIP)
    assert approval.subject_user == user and approval.applicant == applicant
    text = approval.contents[0]["value"]["text"]
    assert fake_wecom.org.users[applicant].name in text and "newcomer" in text  # as the approver knows them
    assert state(user, wired.tenant) == Membership.Status.PENDING
    assert AuditLog.objects.filter(action=AuditLog.Action.APPROVAL_SUBMITTED, target_user=user).count() == 1
    fake_wecom.approve_approval(approval.sp_no, boss)
    assert state(user, wired.tenant) == Membership.Status.ACTIVE
    record = AuditLog.objects.get(action=AuditLog.Action.APPROVE, target_user=user)
    assert record.detail["approvers"] == [boss]


def test_a_revoked_joining_request_rejects_the_member(wired, fake_wecom, joining):
    user, _applicant, _boss = joining
    approval = Approval.objects.get(tenant=wired.tenant, purpose=Approval.Purpose.MEMBERSHIP)
    fake_wecom.revoke_approval(approval.sp_no)
    assert state(user, wired.tenant) == Membership.Status.REJECTED


def test_without_the_setting_pending_members_wait_for_the_admin(wired, fake_wecom):
    applicant = people(fake_wecom, 1)[0]
    user = make_user("waiting")
    bindings.bind(wired.tenant, user, WeComUser.objects.get(tenant=wired.tenant, userid=applicant))
    assert state(user, wired.tenant) == Membership.Status.PENDING
    assert not fake_wecom.approvals and not Approval.objects.exists()


def test_an_active_member_bound_again_submits_nothing(wired, fake_wecom):
    applicant, boss = people(fake_wecom, 2)
    MembershipApprovalSetting.objects.create(tenant=wired.tenant, template_id=JOIN, approvers=boss)
    user = make_user("already")
    make_member(user, wired.tenant)
    bindings.bind(wired.tenant, user, WeComUser.objects.get(tenant=wired.tenant, userid=applicant))
    assert not fake_wecom.approvals


def test_the_fake_app_screen_lets_an_approver_decide(wired, fake_wecom):
    import requests

    applicant, boss = people(fake_wecom, 2)
    approval = services.submit(wired, services.Submission(
        creator=applicant, template_id=LEAVE, contents=leave_contents(), approvers=[boss]))
    screen = requests.get(f"{fake_wecom.api_base}/fake/app/approvals", timeout=5)
    assert screen.status_code == 200 and approval.sp_no in screen.text and "同意" in screen.text
    answer = requests.post(f"{fake_wecom.api_base}/fake/app/approvals/{approval.sp_no}",
                           data={"action": "approve", "userid": boss, "speech": "可以"}, timeout=10)
    assert answer.status_code == 200 and "已通过" in answer.text
    approval.refresh_from_db()
    assert approval.status == Approval.Status.APPROVED
    refused = requests.post(f"{fake_wecom.api_base}/fake/app/approvals/{approval.sp_no}",
                            data={"action": "approve", "userid": boss}, timeout=10)
    assert refused.status_code == 400  # no longer in approval


def test_a_pending_member_found_by_a_sync_becomes_active_when_wecom_approves(wired, fake_wecom):
    from wecom_integration.directory import sync
    from wecom_integration.models import SyncRun

    applicant, boss = people(fake_wecom, 2)
    MembershipApprovalSetting.objects.create(tenant=wired.tenant, template_id=JOIN, approvers=boss)
    outsider = make_user("outsider")  # a system user of another tenant, not of this one
    run = sync.execute_contact_run(sync.create_run(wired.tenant, SyncRun.Kind.CONTACTS, None).pk)
    assert run.status == SyncRun.Status.REVIEW, run.errors
    counts = sync.confirm_run(run, decisions=[sync.Decision(applicant, "bind", "outsider")])
    assert counts["pending"] == 1
    approval = Approval.objects.get(tenant=wired.tenant, purpose=Approval.Purpose.MEMBERSHIP)
    assert approval.subject_user == outsider and approval.applicant == applicant
    assert state(outsider, wired.tenant) == Membership.Status.PENDING
    fake_wecom.approve_approval(approval.sp_no, boss, "欢迎")
    assert state(outsider, wired.tenant) == Membership.Status.ACTIVE
    assert AuditLog.objects.filter(action=AuditLog.Action.APPROVE, target_user=outsider,
                                   detail__sp_no=approval.sp_no).count() == 1
