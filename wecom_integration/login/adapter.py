"""The extension point for host projects: how a WeCom member becomes, and is checked as, a local user.

Subclass :class:`DefaultWeComAdapter`, override what your project does differently, and name the class
in settings::

    WECOM = {"ADAPTER": "myproject.wecom.MyAdapter"}

The sign-in and two-step verification flows (:mod:`wecom_integration.login.services`) call the adapter
for every decision that is a policy rather than a protocol: which account a WeCom userid maps to, whether
a new account may be created at sign-in, who may sign in, where to go afterwards and what "verified"
means for two-step verification.
"""

import logging
from urllib.parse import urlsplit

from django.conf import global_settings, settings
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.core.exceptions import FieldDoesNotExist
from django.db import IntegrityError, transaction
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from wecom_integration import tenancy
from wecom_integration.extension import get_adapter  # noqa: F401  (its home before the rooms)
from wecom_integration.models import AuditLog, Binding, WeComUser

logger = logging.getLogger(__name__)


def _serves(url):
    try:
        resolve(urlsplit(url).path)
    except Resolver404:
        return False
    return True


def login_redirect_url(request):
    """The host's ``LOGIN_REDIRECT_URL``, or, while it is Django's default and the host does not serve
    that page, a page that exists (see :meth:`DefaultWeComAdapter.get_login_redirect_url`)."""
    url = resolve_url(settings.LOGIN_REDIRECT_URL)
    if settings.LOGIN_REDIRECT_URL != global_settings.LOGIN_REDIRECT_URL or _serves(url):
        return url
    try:
        admin_index = reverse("admin:index")
    except NoReverseMatch:
        admin_index = None
    user = getattr(request, "user", None)
    candidates = [admin_index] if user is not None and user.is_staff else []
    candidates += ["/", admin_index]
    for candidate in candidates:
        if candidate and _serves(candidate):
            return candidate
    return "/"


def joins_through_wecom(tenant) -> bool:
    """Whether ``tenant`` decides joining requests through WeCom approvals (a membership approval setting)."""
    from wecom_integration.approvals.membership import setting_for

    return setting_for(tenant.pk) is not None


class DefaultWeComAdapter:
    """What the product does out of the box; every method may be overridden."""

    #: The authentication backend sessions are logged in with (it must be in AUTHENTICATION_BACKENDS).
    backend_path = "wecom_integration.login.backends.WeComBackend"

    def __init__(self, request=None):
        self.request = request

    # The login page -----------------------------------------------------------------------------------

    def list_login_tenants(self, request):
        """The tenants offered a "Sign in with WeCom" button on the login page when none is chosen with
        ``?tenant=``. By default every tenant whose WeCom configuration is enabled; a host project that
        must not show its tenants' names to anonymous visitors returns an empty queryset."""
        return tenancy.tenants_ordered(tenancy.get_tenant_model()._default_manager.filter(wecom_config__enabled=True))

    # From a WeCom userid to a local user ---------------------------------------------------------------

    def get_binding(self, tenant, userid):
        """The Binding of ``userid`` in ``tenant`` (with its user), or None when the member is not bound."""
        return (
            Binding.objects.select_related("user", "wecom_user")
            .filter(tenant=tenant, wecom_user__tenant=tenant, wecom_user__userid__iexact=userid)
            .first()
        )

    def is_open_for_signup(self, request, config, userid):
        """Whether a WeCom member with no account in the tenant gets one at sign-in (WeComConfig's
        "create accounts at sign-in")."""
        return bool(config.allow_signup)

    def get_or_fetch_wecom_user(self, config, userid):
        """The tenant's mirror of ``userid``, created from ``user/get`` when the sync has not seen the member
        yet (with the userid alone if WeCom will not tell more).

        https://developer.work.weixin.qq.com/document/path/90196
        """
        # WeCom userids match ignoring case (doc 90236): ZhangSan signing in is the synced zhangsan.
        wecom_user = WeComUser.objects.filter(tenant=config.tenant, userid__iexact=userid).first()
        if wecom_user is not None:
            return wecom_user
        from wecom_integration.client import WeComError, client_for
        from wecom_integration.directory.services import user_fields_from_api

        fields = {}
        try:
            fields = user_fields_from_api(client_for(config, "app").user.get(userid))
        except WeComError as exc:
            # The member just proved who they are through WeCom; their details are a nicety the sync fills in.
            logger.info("user/get %s for sign-up failed: %r", userid, exc)
        wecom_user, _created = WeComUser.objects.get_or_create(tenant=config.tenant, userid=userid, defaults=fields)
        return wecom_user

    # Template cards -------------------------------------------------------------------------------------

    def template_card_update(self, tenant, click):
        """How to answer a member's click on a template card the app sent (a
        :class:`~wecom_integration.models.CardClick`: ``wecom_userid``, ``task_id``, ``card_type``,
        ``event_key``, ``selected_items``, ``choice`` and ``message``, the card's MessageLog or None).

        Return a text to replace the card's buttons with one disabled button labelled with it
        (``button.replace_name``), a ``template_card`` dict to replace the whole card (checked against
        WeCom's rules), or None to leave the card as it is. Runs in the Celery worker after the click was
        recorded; the update reaches the member who clicked. By default the choice is shown as done
        ("同意 ✓"). https://developer.work.weixin.qq.com/document/path/94888
        """
        return click.done_label()

    def sidebar_panels(self, request, tenant, contact):
        """The host's own panels in the chat sidebar for ``contact`` (an ExternalContact): a list of
        ``(title, html)``, the html already safe (build it with ``format_html``). None by default."""
        return []

    # Customers as members (会员同步注册, issue 18) ------------------------------------------------------------

    #: The user model's field holding a WeChat unionid, when it has one.
    unionid_field = "unionid"

    def _has_unionid_field(self):
        try:
            get_user_model()._meta.get_field(self.unionid_field)
        except FieldDoesNotExist:
            return False
        return True

    def account_for_unionid(self, tenant, unionid):
        """The host's account of the customer whose WeChat unionid this is, or None. By default the user
        whose ``unionid_field`` holds it, when the user model has that field; override to look elsewhere
        (a profile, a membership table)."""
        if not unionid or not self._has_unionid_field():
            return None
        return get_user_model().objects.filter(**{self.unionid_field: unionid}).first()

    def create_customer_account(self, tenant, contact):
        """A new member account for a customer (the tenant's "create" setting): named the tenant's code +
        "wx-" + the unionid's end, unique, unusable password, the customer's name; no tenant membership (a
        customer is not staff)."""
        from wecom_integration.directory import bindings

        User = get_user_model()
        wanted = f"{self.tenant_code(tenant)}wx-{contact.unionid[-12:]}"
        username = bindings.available_usernames({contact.unionid: wanted})[contact.unionid]
        user = User(**{User.USERNAME_FIELD: username})
        if hasattr(user, "first_name"):
            user.first_name = (contact.name or "")[:150]
        if self._has_unionid_field():
            setattr(user, self.unionid_field, contact.unionid)
        user.set_unusable_password()
        user.save()
        return user

    def username_for(self, tenant, wecom_user):
        """The username the contact sync gives a member's account: the tenant's code + the WeCom userid
        (seed 001: 组织门牌号 + 企业微信账号)."""
        return f"{self.tenant_code(tenant)}{wecom_user.userid}"

    def create_user(self, tenant, wecom_user):
        """Make a new account for ``wecom_user`` and bind it (sign-up at sign-in). Returns (binding, created).

        The account is named :meth:`username_for`, or a unique variant of it when an account of that name
        exists: sign-up never binds, and so never signs in to, an account that already exists (issue 16:
        house number ``o`` + userid ``ps`` would otherwise reach the superuser ``ops``). The new account
        has an unusable password and an active membership. Returns the binding that exists instead, or
        (None, False), when the member was bound meanwhile (a concurrent sign-in or the sync).
        """
        from wecom_integration.directory import bindings

        User = get_user_model()
        wanted = self.username_for(tenant, wecom_user)
        username = bindings.available_usernames({wecom_user.userid: wanted})[wecom_user.userid]
        try:
            with transaction.atomic():
                user = User(**{User.USERNAME_FIELD: username})
                if hasattr(user, "first_name"):
                    user.first_name = (wecom_user.name or "")[:150]
                user.set_unusable_password()
                user.save()
                self.set_memberships(tenant, {user.pk: tenancy.ACTIVE})
                bindings.audit(
                    tenant.pk,
                    AuditLog.Action.CREATE_ACCOUNT,
                    target_user=user,
                    wecom_userid=wecom_user.userid,
                    source=bindings.SOURCE_SIGN_IN,
                    **({"wanted_username": wanted} if username != wanted else {}),
                )
                binding = bindings.bind(tenant, user, wecom_user, source=bindings.SOURCE_SIGN_IN)
        except (bindings.BindingError, IntegrityError) as exc:
            # A concurrent sign-in (or the sync) bound the member, or took the name, first: whatever
            # binding exists now decides.
            logger.info("sign-up of WeCom member %s in tenant %s: %s", wecom_user.userid, tenant.pk, exc)
            return self.get_binding(tenant, wecom_user.userid), False
        return binding, True

    # Who may sign in -----------------------------------------------------------------------------------

    def check_can_login(self, request, tenant, binding):
        """Raise a LoginRefused unless ``binding``'s account may sign in to ``tenant``: the binding and the
        account are active, the binding was not made by sign-up for an account that existed before it
        (issue 16), and the account's membership in the tenant is active."""
        # Imported here: the flows module imports this one.
        from wecom_integration.directory import bindings
        from wecom_integration.login import refusals

        user = binding.user
        if not binding.is_active or not user.is_active:
            raise refusals.AccountDeactivated(tenant=tenant, detail=f"user {user.pk}")
        if bindings.made_by_signup_for_an_existing_account(binding):
            # Issue 16: only a sync confirm or an admin's bind leads a WeCom member to an existing account.
            raise refusals.NotBound(tenant=tenant, detail=f"user {user.pk} bound by sign-up, not created by it")
        status = self.membership_statuses(tenant, [user.pk]).get(user.pk)
        if status is None and joins_through_wecom(tenant):
            # Issue 17: the tenant decides joining requests through WeCom approvals, so signing in asks to
            # join (审核中) and the approval is submitted; the member is told it waits for the decision.
            bindings.ensure_membership(user, tenant, source=bindings.SOURCE_SIGN_IN,
                                       wecom_userid=binding.wecom_user.userid)
            raise refusals.MembershipPending(tenant=tenant, detail=f"user {user.pk} asked to join")
        if status is None:
            raise refusals.NoMembership(tenant=tenant, detail=f"user {user.pk}")
        if status == tenancy.PENDING:
            raise refusals.MembershipPending(tenant=tenant, detail=f"user {user.pk}")
        if status != tenancy.ACTIVE:
            raise refusals.AccountDeactivated(tenant=tenant, detail=f"membership {status}")

    # After signing in ----------------------------------------------------------------------------------

    def login(self, request, user):
        """Log ``user`` in with Django's session."""
        auth_login(request, user, backend=self.backend_path)

    def get_login_redirect_url(self, request, tenant):
        """Where to go after signing in when no safe ``next`` was given: the host's
        ``LOGIN_REDIRECT_URL``. Django's default for it, ``/accounts/profile/``, is a page most projects
        do not have: unless the host serves it, a staff user goes to the admin's index and anyone else to
        the site's root (or, if the host has no root page either, the admin, which explains)."""
        return login_redirect_url(request)

    # Two-step verification -----------------------------------------------------------------------------

    def is_verified(self, request, user):
        """The tenant's own check in WeCom's two-step verification: True when the member proved who they
        are to this site. By default they must be signed in here as ``user`` (the account bound to them).

        https://developer.work.weixin.qq.com/document/path/90203
        """
        return request.user.is_authenticated and request.user.pk == user.pk

    def get_verification_url(self, request, tenant, next_url):
        """Where to send a member whom :meth:`is_verified` does not yet accept; they come back to
        ``next_url``. By default the login page, with the tenant's WeCom button."""
        from wecom_integration.login.services import login_url_with_next

        return login_url_with_next(next_url, tenant.pk)

    # Roles and memberships in a tenant -------------------------------------------------------------------
    # The API's permissions, the admin's scoping, sign-in and the sync ask these. The defaults answer from
    # ``tenants.Membership`` (wecom_integration.tenancy.MembershipBackend); a host whose WECOM_TENANT_MODEL
    # is its own organisation model overrides them to answer from its own memberships (issue 24,
    # docs/install.md "Your own organisations"). Membership states are the strings of
    # wecom_integration.tenancy: ACTIVE, PENDING, REJECTED, INACTIVE.

    def memberships(self):
        """The default membership backend (``tenants.Membership``, or none with a host's tenant model)."""
        return tenancy.membership_backend()

    def is_tenant_member(self, user, tenant):
        """Whether ``user`` may act in ``tenant`` at all: an active membership, or a superuser."""
        if not (user and user.is_authenticated and user.is_active):
            return False
        if user.is_superuser:
            return True
        return self.membership_statuses(tenant, [user.pk]).get(user.pk) == tenancy.ACTIVE

    def is_tenant_admin(self, user, tenant):
        """Whether ``user`` administers ``tenant``: an active membership with the admin role, or a superuser."""
        if not (user and user.is_authenticated and user.is_active):
            return False
        if user.is_superuser:
            return True
        return tenant.pk in self.admin_tenant_ids(user)

    def admin_tenant_ids(self, user):
        """The ids of the tenants ``user`` administers (the admin site shows them only their rows); a
        superuser is handled before this is asked."""
        return self.memberships().admin_tenant_ids(user)

    def membership_role(self, user, tenant):
        """A label of ``user``'s role in ``tenant`` for the API's "current tenant" (None: no membership)."""
        return self.memberships().membership_role(user, tenant)

    def member_user_ids(self, tenant, statuses=(tenancy.ACTIVE,)):
        """A queryset of the ids (one column) of the users whose membership of ``tenant`` is in one of
        ``statuses``: used in subqueries, so it must be a queryset of the user model's primary keys."""
        return self.memberships().member_user_ids(tenant, statuses)

    def membership_statuses(self, tenant, user_ids):
        """{user id: state} of these users' memberships of ``tenant``; users without one are absent."""
        return self.memberships().membership_statuses(tenant, user_ids)

    def set_memberships(self, tenant, statuses):
        """Give each user of ``statuses`` ({user id: state}) that membership state in ``tenant``, creating
        the memberships that do not exist: an account created for a WeCom member (ACTIVE), an existing
        account the sync or sign-in bound (PENDING until a tenant admin approves). Returns how many changed."""
        return self.memberships().set_memberships(tenant, statuses)

    def deactivate_memberships(self, tenant_id, user_ids):
        """End the active memberships of these users in the tenant (their WeCom account quit or was
        disabled, ``WECOM["DEACTIVATE_MEMBERSHIP_ON_LEAVE"]``); returns how many."""
        return self.memberships().deactivate_memberships(tenant_id, user_ids)

    def pending_membership_count(self, tenant):
        """How many memberships of ``tenant`` wait for an admin's approval (the tenant dashboard)."""
        return self.memberships().pending_count(tenant)

    def make_tenant_admin(self, user, tenant):
        """Make ``user`` an active admin of ``tenant`` (``wecom_configure --admin``)."""
        self.memberships().make_admin(user, tenant)

    def tenant_code(self, tenant):
        """The tenant's house number (seed 001's 门牌号): the prefix of the accounts the sync creates.
        By default its ``code`` field, or its primary key when the model has none."""
        return str(getattr(tenant, "code", "") or tenant.pk)

    def members_may_send(self, tenant):
        """Whether ordinary members of ``tenant`` may send messages (WeComConfig's "members may send
        messages", off by default)."""
        from wecom_integration.models import WeComConfig

        return WeComConfig.objects.filter(tenant=tenant, members_may_send=True).exists()

    def may_send(self, user, tenant, *, to_all=False, parties=(), tags=()):
        """Whether ``user`` may send a message in ``tenant`` through the API: to everyone (@all) when
        ``to_all``, to departments ``parties`` or tags ``tags``, otherwise to chosen members. Tenant admins
        may; ordinary members only to chosen members, only where the tenant allows it, never to @all."""
        if self.is_tenant_admin(user, tenant):
            return True
        if to_all or parties or tags:
            return False
        return self.is_tenant_member(user, tenant) and self.members_may_send(tenant)
