"""`manage.py wecom_demo --no-server`: a second run says how to reset the demo password instead of hiding it."""

import io
import socket

import pytest
from django.core.management import call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_demo(port):
    out = io.StringIO()
    with override_settings(WECOM={"API_BASE": f"http://127.0.0.1:{port}"}):
        call_command(
            "wecom_demo", "--no-server", "--fake-port", str(port), "--users", "20", "--departments", "3", stdout=out
        )
    return out.getvalue()


def test_second_demo_run_prints_how_to_reset_the_password():
    first = _run_demo(_free_port())
    assert "Log in as:  demo / " in first
    assert "changepassword" not in first

    second = _run_demo(_free_port())
    assert "manage.py changepassword demo" in second
    assert "Log in as:  demo / " not in second


def test_first_demo_run_leaves_proposals_to_review_a_pending_member_and_a_bound_one():
    """Issue 20 item 5: the demo shows the sync's review, 审核中 and a bound member without anyone touching WeCom."""
    from tenants.models import Membership
    from wecom_integration.management.demo import PREFIX
    from wecom_integration.models import Binding, SyncProposal, SyncRun

    out = _run_demo(_free_port())
    run = SyncRun.objects.get(kind=SyncRun.Kind.CONTACTS)
    assert run.status == SyncRun.Status.REVIEW
    assert f"sync #{run.pk} waits for your review" in out and "is a member pending approval" in out
    proposals = SyncProposal.objects.filter(run=run)
    binds = proposals.filter(action=SyncProposal.Action.BIND)
    assert binds.count() == 6 and all(p.user.get_username().startswith(PREFIX) for p in binds)
    twins = proposals.get(action=SyncProposal.Action.SKIP, ambiguous=True)  # two accounts, one member's name
    assert "Several accounts have this name" in twins.note
    assert proposals.filter(action=SyncProposal.Action.CREATE).count() >= 5
    assert run.counts["proposals"]["bind"] == 6
    # Already bound, and bound from outside the tenant: pending approval. Neither is proposed again.
    assert Binding.objects.count() == 2
    pending = Membership.objects.get(status=Membership.Status.PENDING)
    assert pending.user.get_username().startswith(f"{PREFIX}outside-")
    assert not proposals.filter(wecom_user__in=Binding.objects.values("wecom_user")).exists()
    # Issue 17: the joining request went to WeCom as an approval; a leave request waits there too.
    from wecom_integration.models import Approval

    joining = Approval.objects.get(purpose=Approval.Purpose.MEMBERSHIP)
    assert joining.subject_user == pending.user and joining.status == Approval.Status.PENDING
    assert Approval.objects.filter(template_id__isnull=False).count() == 2
    assert "/fake/app/approvals" in out
    # Issue 18: contact tags mirrored; a customer for the sidebar, with tags, a group and a linked member.
    from wecom_integration.models import ContactTag, CustomerGroup, ExternalContact, FollowUser

    assert sorted(ContactTag.objects.values_list("name", flat=True)) == ["管理层 Management", "销售部 Sales"]
    linked = ExternalContact.objects.get(linked_user__isnull=False)
    assert FollowUser.objects.filter(contact=linked).exclude(tag_ids=[]).exists()
    assert CustomerGroup.objects.filter(members__userid=linked.external_userid).exists()
    assert "/fake/app/toolbar" in out and linked.name in out
    # Issue 18 item 6: a card with buttons went to the bound member, to click on the fake's screen.
    from wecom_integration.models import MessageLog

    card = MessageLog.objects.get(msgtype="template_card")
    assert card.status == MessageLog.Status.SENT and card.touser == Binding.objects.get(
        user__memberships__status=Membership.Status.ACTIVE).wecom_user.userid
    assert f"/fake/app/cards?userid={card.touser}" in out

    # A second run finds its accounts and its review, and seeds nothing twice.
    again = _run_demo(_free_port())
    assert "Seeded:" not in again
    assert SyncRun.objects.count() == 2 and Binding.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_live_callbacks_reach_the_app_and_show_in_inbox_events_members_and_customers(
    live_server, fake_wecom, settings
):
    from django.urls import reverse

    from tests.factories import config_from_fake, make_tenant
    from wecom_integration.management.demo import send_live_callbacks
    from wecom_integration.models import CallbackEvent, ExternalContact, InboxMessage, WeComUser

    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    config = config_from_fake(make_tenant("demo"), fake_wecom)
    for kind in ("app", "contacts", "customers"):
        token, key = config.callback_credentials(kind)
        url = live_server.url + reverse(f"wecom_integration:callback-{kind}", kwargs={"tenant_id": config.tenant_id})
        fake_wecom.register_callback(url, token, key, kind=kind)
    anchor = next(iter(fake_wecom.org.users))
    results = send_live_callbacks(fake_wecom, anchor)
    assert [r.status for r in results] == [200, 200, 200]
    assert sorted(CallbackEvent.objects.values_list("kind", flat=True)) == ["app", "contacts", "customers"]
    assert set(CallbackEvent.objects.values_list("status", flat=True)) == {CallbackEvent.Status.HANDLED}
    assert InboxMessage.objects.get().content.startswith("你好")
    assert WeComUser.objects.filter(name="新同事 New Colleague").exists()
    assert ExternalContact.objects.get().name == "李女士 Ms Li"


@pytest.mark.django_db(transaction=True)
def test_the_demo_card_is_clicked_on_the_fake_screen_and_shows_the_choice_as_done(live_server, fake_wecom, settings):
    import requests
    from django.urls import reverse

    from tests.factories import config_from_fake, make_tenant, make_user
    from wecom_integration.management import demo
    from wecom_integration.models import CardClick

    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    config = config_from_fake(make_tenant("democards"), fake_wecom)
    token, key = config.callback_credentials("app")
    url = live_server.url + reverse("wecom_integration:callback-app", kwargs={"tenant_id": config.tenant_id})
    fake_wecom.register_callback(url, token, key, kind="app")
    seeded = demo.seed(config.tenant, fake_wecom, make_user("the-admin"))
    userid = seeded["card_userid"]
    screen = f"{fake_wecom.api_base}/fake/app/cards"
    assert "加班申请" in requests.get(screen, params={"userid": userid}, timeout=10).text
    [held] = fake_wecom.cards_for(userid)

    after = requests.post(f"{screen}/click", data={"userid": userid, "task_id": held["task_id"], "key": "approve"},
                          timeout=10).text

    assert "同意 Approve ✓" in after
    click = CardClick.objects.get()
    assert click.choice == "同意 Approve" and click.status == CardClick.Status.UPDATED
