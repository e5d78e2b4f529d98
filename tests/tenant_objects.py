"""One object of every tenant-owned model, for isolation sweeps."""

from django.contrib.auth import get_user_model

from tenants.models import Membership, Tenant
from tests.factories import make_config, make_member, make_user
from wecom_integration import models as m


def make_tenant_objects(tenant, prefix):
    """Create one row of every tenant-owned model for ``tenant``; returns {model: obj}."""
    user = make_user(f"{prefix}-member", first_name=f"{prefix} member")
    membership = make_member(user, tenant)
    config = make_config(tenant)
    dept = m.Department.objects.create(tenant=tenant, dept_id=1, name=f"{prefix} company")
    wuser = m.WeComUser.objects.create(tenant=tenant, userid=f"{prefix}-wu", name=f"{prefix} WeCom user")
    binding = m.Binding.objects.create(tenant=tenant, user=user, wecom_user=wuser)
    audit = m.AuditLog.objects.create(tenant=tenant, action="bind", target_user=user, wecom_userid=wuser.userid)
    event = m.CallbackEvent.objects.create(
        tenant=tenant, kind="contacts", dedupe_key=f"{prefix}-k", xml="<xml/>", subject=f"{prefix}-subject"
    )
    inbox = m.InboxMessage.objects.create(
        tenant=tenant, wecom_userid=wuser.userid, direction="in", msg_type="text", content=f"{prefix} hello"
    )
    contact = m.ExternalContact.objects.create(tenant=tenant, external_userid=f"wm-{prefix}", name=f"{prefix} cust")
    follow = m.FollowUser.objects.create(contact=contact, userid=wuser.userid)
    run = m.SyncRun.objects.create(tenant=tenant, status="review")
    proposal = m.SyncProposal.objects.create(run=run, wecom_user=wuser, user=user, action="bind")
    message = m.MessageLog.objects.create(tenant=tenant, msgtype="text", content={"content": prefix})
    click = m.CardClick.objects.create(tenant=tenant, message=message, wecom_userid=wuser.userid,
                                       task_id=f"{prefix}-task", choice=f"{prefix} choice")
    domain_file = m.DomainVerificationFile.objects.create(
        tenant=tenant, name=f"WW_verify_{prefix}0000000.txt".replace("-", ""), content=prefix.encode()
    )
    approval = m.Approval.objects.create(tenant=tenant, sp_no=f"{prefix}-sp", applicant=wuser.userid,
                                         purpose="membership", subject_user=user)
    approval_setting = m.MembershipApprovalSetting.objects.create(tenant=tenant, template_id=f"{prefix}-tpl",
                                                                  approvers=wuser.userid)
    group = m.CustomerGroup.objects.create(tenant=tenant, chat_id=f"wr{prefix}", name=f"{prefix} group")
    group_member = m.CustomerGroupMember.objects.create(group=group, userid=f"wm{prefix}", type=2, name=f"{prefix} gm")
    tag = m.ContactTag.objects.create(tenant=tenant, tagid=7, name=f"{prefix} tag")
    tag_member = m.ContactTagMember.objects.create(tag=tag, userid=wuser.userid)
    customer_tag = m.CustomerTag.objects.create(tenant=tenant, tag_id=f"et{prefix}", name=f"{prefix} ctag",
                                                group_id=f"etg{prefix}", group_name=f"{prefix} group")
    return {
        Tenant: tenant,
        m.ContactTag: tag,
        m.ContactTagMember: tag_member,
        m.CustomerTag: customer_tag,
        m.CustomerGroup: group,
        m.CustomerGroupMember: group_member,
        m.Approval: approval,
        m.MembershipApprovalSetting: approval_setting,
        Membership: membership,
        get_user_model(): user,
        m.WeComConfig: config,
        m.Department: dept,
        m.WeComUser: wuser,
        m.Binding: binding,
        m.AuditLog: audit,
        m.CallbackEvent: event,
        m.InboxMessage: inbox,
        m.ExternalContact: contact,
        m.FollowUser: follow,
        m.SyncRun: run,
        m.SyncProposal: proposal,
        m.MessageLog: message,
        m.CardClick: click,
        m.DomainVerificationFile: domain_file,
    }
