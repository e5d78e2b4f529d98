"""What `make demo` puts in the demo tenant so that every feature shows without anyone touching WeCom.

- Accounts named like WeCom members of the fake's organisation (surname in ``last_name`` as Chinese names are
  kept): the sync proposes to bind them. Two accounts share one member's name: that proposal is left to the
  admin (ambiguous). One account is already bound to its member.
- A system user outside the tenant, bound to a member as an admin would bind them by hand: their membership
  waits for approval (审核中).
- A first contact sync, so the review screen has proposals.
- Joining requests decided through WeCom approvals: the outsider's pending membership is submitted as an
  approval to a member, who decides it on the fake's WeCom-app screen (``/fake/app/approvals``); a leave
  request waits there too, and is approved live once the server answers.
- Contact tags in WeCom (the sync mirrors them), and a customer as the chat sidebar shows one: with corp tags,
  in a customer group, linked to a member account (会员同步注册), after a first customer sync. The fake's
  stand-in WeCom client (``/fake/app/toolbar``) opens the sidebar on that customer.
- A card with buttons (a template card) goes to the bound member: click it on the fake's WeCom-app screen
  (``/fake/app/cards``); the click comes back as a callback and the card shows the choice as done.
- Once the server answers, the fake sends live callbacks: a new member, a message to the app, a new customer.

Used only by the ``wecom_demo`` command (and its tests); never by the app itself.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request

from django.contrib.auth import get_user_model

from wecom_integration import tenancy
from wecom_integration.approvals import membership as membership_approvals
from wecom_integration.approvals import services as approvals
from wecom_integration.customers import services as customer_services
from wecom_integration.customers import sync as customer_sync
from wecom_integration.directory import bindings, sync
from wecom_integration.extension import get_adapter
from wecom_integration.messaging import services as messaging
from wecom_integration.models import (
    Binding,
    ExternalContact,
    MembershipApprovalSetting,
    SyncRun,
    WeComConfig,
    WeComUser,
)
from wecom_integration.testing.fake.approval import JOIN_TEMPLATE_ID, LEAVE_TEMPLATE_ID

logger = logging.getLogger(__name__)

#: Usernames of the demo's accounts start with this, so a second `make demo` finds them.
PREFIX = "demo-"
MATCHED = 6


def _account(username: str, name: str):
    User = get_user_model()
    user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
    if user is None:
        user = User(**{User.USERNAME_FIELD: username})
        user.set_unusable_password()
    # Chinese names: the surname first, kept in last_name (the sync matches 王 + 明 as 王明).
    if hasattr(user, "last_name"):
        user.last_name, user.first_name = name[:1], name[1:]
    user.save()
    return user


def _members(fake):
    """Active members of the fake's organisation with a unique name, in a stable order."""
    users = sorted(fake.org.users.values(), key=lambda u: u.seq)
    counts: dict[str, int] = {}
    for user in users:
        counts[user.name] = counts.get(user.name, 0) + 1
    return [u for u in users if u.status == 1 and counts[u.name] == 1]


def seed(tenant, fake, actor) -> dict:
    """Seed the demo tenant once (a second `make demo` finds its accounts and leaves them); returns what it
    did, for the command's output."""
    User = get_user_model()
    if User.objects.filter(**{f"{User.USERNAME_FIELD}__startswith": PREFIX}).exists():
        return {}
    members = _members(fake)
    if len(members) < MATCHED + 3:
        return {}
    matched, twins, bound, outsider = members[:MATCHED], members[MATCHED], members[MATCHED + 1], members[MATCHED + 2]
    adapter = get_adapter()
    accounts = [_account(f"{PREFIX}{m.userid.lower()}", m.name) for m in matched]
    accounts += [_account(f"{PREFIX}{twins.userid.lower()}-{n}", twins.name) for n in (1, 2)]
    already = _account(f"{PREFIX}{bound.userid.lower()}", bound.name)
    adapter.set_memberships(tenant, {user.pk: tenancy.ACTIVE for user in [*accounts, already]})
    # The outsider has no membership of the demo tenant: binding them makes it wait for approval.
    stranger = _account(f"{PREFIX}outside-{outsider.userid.lower()}", outsider.name)

    # Contact tags in WeCom, which the sync below mirrors (a message can then go to a tag).
    fake.create_contact_tag("销售部 Sales", [m.userid for m in matched[:3]])
    fake.create_contact_tag("管理层 Management", [bound.userid])

    # Run here, not through Celery: the demo's review must be there when the server starts, whatever the broker.
    run = sync.create_run(tenant, SyncRun.Kind.CONTACTS, actor)
    sync.execute_contact_run(run.pk)
    run.refresh_from_db()
    wecom = {w.userid: w for w in WeComUser.objects.filter(tenant=tenant, userid__in=[bound.userid, outsider.userid])}
    # Joining requests go to WeCom approvals, decided by the already-bound member.
    MembershipApprovalSetting.objects.create(tenant=tenant, template_id=JOIN_TEMPLATE_ID, approvers=bound.userid)
    if len(wecom) == 2:
        bindings.bind(tenant, already, wecom[bound.userid], actor=actor, source="demo")
        bindings.bind(tenant, stranger, wecom[outsider.userid], actor=actor, source="demo")
        # Submitted once the bind commits; here too, for a caller inside a transaction (a no-op when done).
        membership_approvals.submit_for(tenant.pk, stranger.pk, "demo")
    leave = approvals.submit(tenant.wecom_config, approvals.Submission(
        creator=matched[0].userid, template_id=LEAVE_TEMPLATE_ID, approvers=[bound.userid],
        contents=[{"id": "Text-1", "value": "拜访客户 Client visit"}, {"id": "Number-1", "value": {"new_number": "1"}}],
    ))
    card = send_demo_card(tenant, already, actor) if len(wecom) == 2 else None
    if run.status == SyncRun.Status.REVIEW:
        # The two bindings above came after the sync proposed them: propose again without them.
        proposals = sync.build_proposals(run)
        SyncRun.objects.filter(pk=run.pk).update(counts={**run.counts, "proposals": proposals})
    customer = seed_customers(tenant, fake, actor)
    return {
        "customer": customer,
        "run": run.pk,
        "accounts": len(accounts) + 2,
        "pending": stranger.get_username(),
        "bound": Binding.objects.filter(tenant=tenant).count(),
        "approver": f"{bound.name} ({bound.userid})",
        "leave": leave.sp_no,
        "card_userid": bound.userid if card is not None and messaging.is_success(card) else "",
    }


def seed_customers(tenant, fake, actor) -> dict:
    """A customer as the chat sidebar shows one: two corp tags from its member, a customer group, and a member
    account linked by its unionid; then a first customer sync. Returns the customer's names."""
    contact = next((c for c in fake.org.external_contacts.values() if c.type == 1 and c.unionid and c.followers),
                   None)
    if contact is None:
        return {}
    follow = contact.followers[0]
    tags = list(fake.org.tags)[:2]
    with fake._lock:
        fake._mark(follow.user.userid, contact.external_userid, tags, [])
    others = [c.external_userid for c in fake.org.external_contacts.values() if c is not contact][:2]
    fake.create_group_chat(follow.user.userid, "VIP 客户群 VIP customers", [contact.external_userid, *others],
                           push=False)
    run = customer_sync.execute_customer_run(sync.create_run(tenant, SyncRun.Kind.CUSTOMERS, actor).pk)
    # 会员同步注册: from now on a new customer with a unionid gets a member account; this one now.
    WeComConfig.objects.filter(tenant=tenant).update(customer_member_link=WeComConfig.CustomerMemberLink.CREATE)
    mirrored = ExternalContact.objects.filter(tenant=tenant, external_userid=contact.external_userid).first()
    if mirrored is not None:
        customer_services.link_members(tenant.pk, [mirrored.pk])
    return {"external_userid": contact.external_userid, "name": contact.name, "member": follow.user.name,
            "run": run.pk}


def send_demo_card(tenant, account, actor):
    """A card with buttons (button_interaction) to ``account``'s WeCom member; its MessageLog."""
    card = {
        "card_type": "button_interaction",
        "source": {"desc": "演示企业 Demo Co."},
        "main_title": {"title": "加班申请 Overtime request", "desc": "周六 9:00-12:00 · Saturday morning"},
        "horizontal_content_list": [{"keyname": "申请人 By", "value": "演示 Demo"}],
        "button_list": [
            {"text": "同意 Approve", "key": "approve", "style": 1},
            {"text": "驳回 Reject", "key": "reject", "style": 2},
        ],
    }
    return messaging.send(tenant, messaging.Message.template_card(card), usernames=[account.get_username()],
                          sender=actor, source="demo")


def anchor_userid(tenant) -> str | None:
    """The WeCom member the live callbacks come from: one bound to a demo account, else any active member."""
    binding = Binding.objects.filter(tenant=tenant, is_active=True).select_related("wecom_user").first()
    if binding is not None:
        return binding.wecom_user.userid
    member = WeComUser.objects.filter(tenant=tenant, removed=False, status=1).order_by("userid").first()
    return member.userid if member else None


def send_live_callbacks(fake, anchor_userid: str) -> list:
    """What a working day sends: a new member joins, a member writes to the app, a member adds a customer.
    Returns the delivery results (each callback's HTTP status as WeCom would see it)."""
    stamp = int(time.time()) % 100000
    results = []
    results += fake.add_user(f"newcomer{stamp}", "新同事 New Colleague", department=(1,))
    results += fake.send_app_message(anchor_userid, "你好，请问报销流程怎么走？ How do I file an expense claim?")
    _external, delivered = fake.add_external_contact(anchor_userid, "李女士 Ms Li")
    results += delivered
    # The approver approves the leave request in the WeCom app (the joining request is left to you).
    for sp_no, approval in list(fake.approvals.items()):
        if approval["template_id"] == LEAVE_TEMPLATE_ID and approval["sp_status"] == 1:
            approver = approval["sp_record"][0]["details"][0]["approver"]["userid"]
            results += fake.approve_approval(sp_no, approver, "同意 Approved")
    return results


def send_when_up(fake, url: str, anchor_userid: str, timeout: float = 60.0) -> threading.Thread:
    """In the background: wait until the demo server answers ``url``, then :func:`send_live_callbacks`."""

    def run():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - the demo's own loopback address
                    break
            except OSError:
                time.sleep(0.5)
        else:
            logger.warning("The demo server did not answer %s; no live callbacks sent.", url)
            return
        try:
            results = send_live_callbacks(fake, anchor_userid)
            logger.info("Demo: the fake WeCom sent %d live callbacks.", len(results))
        except Exception:  # the demo server keeps running whatever the fake does
            logger.exception("Demo: the live callbacks failed.")

    thread = threading.Thread(target=run, name="demo-live-callbacks", daemon=True)
    thread.start()
    return thread
