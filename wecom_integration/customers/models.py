"""The customers' mirror: external contacts and the members who follow each of them."""


from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from wecom_integration.tenancy import ensure_setting

# The ForeignKeys below name WECOM_TENANT_MODEL; a host that does not set it gets the default.
ensure_setting()


class ExternalContact(models.Model):
    """A customer (external contact) of the tenant, maintained by the customer sync and callbacks."""

    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_external_contacts",
        verbose_name=_("tenant"),
    )
    external_userid = models.CharField(_("external userid"), max_length=128)
    name = models.CharField(_("name"), max_length=128, blank=True)
    type = models.PositiveSmallIntegerField(_("type"), default=1, help_text=_("1 WeChat user, 2 WeCom user"))
    avatar = models.CharField(_("avatar"), max_length=512, blank=True)
    gender = models.PositiveSmallIntegerField(_("gender"), default=0)
    corp_name = models.CharField(_("company"), max_length=128, blank=True)
    # WeChat's unionid (for WeChat users, type 1): how the business system recognises a customer as a member.
    unionid = models.CharField(_("WeChat unionid"), max_length=64, blank=True)
    linked_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("member account"),
    )
    removed = models.BooleanField(_("deleted"), default=False)
    removed_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    fingerprint = models.CharField(max_length=40, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        constraints = [models.UniqueConstraint(fields=["tenant", "external_userid"], name="uniq_external_contact")]

    def __str__(self):
        return self.name or self.external_userid


class FollowUser(models.Model):
    """A member of the tenant who follows (has added) a customer."""

    contact = models.ForeignKey(ExternalContact, on_delete=models.CASCADE, related_name="follow_users")
    userid = models.CharField(_("WeCom userid"), max_length=64)
    remark = models.CharField(_("remark"), max_length=128, blank=True)
    add_time = models.BigIntegerField(_("added at"), default=0)
    state = models.CharField(_("state"), max_length=64, blank=True)
    removed = models.BooleanField(_("deleted"), default=False)
    removed_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    # False when the last customer sync could not see this relation: its member is outside the visible
    # range of the app that reads customers. Kept as it was, never ended for that.
    visible = models.BooleanField(_("in the app's visible range"), default=True)
    # The corp tags (企业标签) the member put on this customer, by tag id; their names are in CustomerTag.
    tag_ids = models.JSONField(_("tags"), default=list, blank=True)

    class Meta:
        verbose_name = _("follow user")
        verbose_name_plural = _("follow users")
        constraints = [models.UniqueConstraint(fields=["contact", "userid"], name="uniq_follow_user")]

    def __str__(self):
        return f"{self.userid} → {self.contact_id}"


class CustomerGroup(models.Model):
    """A customer group (客户群) of the tenant: a group chat a member owns with customers in it."""

    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_customer_groups",
        verbose_name=_("tenant"),
    )
    chat_id = models.CharField(_("group id"), max_length=64)
    name = models.CharField(_("name"), max_length=128, blank=True)
    owner = models.CharField(_("owner (WeCom userid)"), max_length=64, blank=True)
    notice = models.TextField(_("notice"), blank=True)
    created = models.DateTimeField(_("created in WeCom"), null=True, blank=True)
    dismissed = models.BooleanField(_("dismissed"), default=False)
    dismissed_at = models.DateTimeField(_("dismissed at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("customer group")
        verbose_name_plural = _("customer groups")
        constraints = [models.UniqueConstraint(fields=["tenant", "chat_id"], name="uniq_customer_group")]

    def __str__(self):
        return self.name or self.chat_id


class CustomerGroupMember(models.Model):
    """Someone in a customer group: a member of the corp (type 1) or a customer (type 2)."""

    group = models.ForeignKey(CustomerGroup, on_delete=models.CASCADE, related_name="members")
    userid = models.CharField(_("userid or external userid"), max_length=128)
    type = models.PositiveSmallIntegerField(_("type"), default=1, help_text=_("1 member of the corp, 2 customer"))
    name = models.CharField(_("name"), max_length=128, blank=True)
    join_time = models.BigIntegerField(_("joined at"), default=0)
    join_scene = models.PositiveSmallIntegerField(
        _("join scene"), default=0, help_text=_("1 invited directly, 2 by link, 3 by QR code")
    )
    invitor = models.CharField(_("invited by"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("group member")
        verbose_name_plural = _("group members")
        constraints = [models.UniqueConstraint(fields=["group", "userid"], name="uniq_customer_group_member")]

    def __str__(self):
        return self.name or self.userid


class CustomerTag(models.Model):
    """A customer tag (企业客户标签) of the corp's library, with the group it belongs to (a group exists only
    while it holds a tag, so each tag row carries its group)."""

    tenant = models.ForeignKey(
        settings.WECOM_TENANT_MODEL, on_delete=models.CASCADE, related_name="wecom_customer_tags",
        verbose_name=_("tenant"),
    )
    tag_id = models.CharField(_("tag id"), max_length=64)
    name = models.CharField(_("tag name"), max_length=64)
    order = models.PositiveBigIntegerField(_("order"), default=0)
    group_id = models.CharField(_("tag group id"), max_length=64)
    group_name = models.CharField(_("tag group"), max_length=64)
    group_order = models.PositiveBigIntegerField(_("group order"), default=0)
    created = models.DateTimeField(_("created in WeCom"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("customer tag")
        verbose_name_plural = _("customer tags")
        # WeCom shows larger orders first.
        ordering = ["tenant", "-group_order", "group_name", "-order", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "tag_id"], name="uniq_customer_tag")]

    def __str__(self):
        return f"{self.group_name} / {self.name}"
