"""Issue 16 item 1: a tenant admin must never reach another account through the names of accounts made
for WeCom members, through approval of a pending membership, a sync confirm or a manual bind.

The attack, as found: the tenant admin sets their tenant's house number (门牌号) to ``o``; the WeCom
member ``ps`` signs in where sign-up is allowed; ``o`` + ``ps`` = ``ops`` is an existing superuser
outside the tenant; the sign-in leaves a pending membership; the tenant admin approves it; the next
WeCom sign-in is the superuser. Each step is tried here over HTTP (admin pages, our callback, the
fake WeCom issuing the codes), and each must fail on its own.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tenants.models import Membership
from tests.factories import config_from_fake, make_member, make_tenant, make_tenant_admin, make_user
from tests.login.test_login import callback, qr_state, refusal, session_user
from wecom_integration.directory import bindings, sync
from wecom_integration.models import AuditLog, Binding, WeComUser

User = get_user_model()
pytestmark = pytest.mark.django_db

BACKEND = "wecom_integration.login.backends.WeComBackend"


@pytest.fixture(autouse=True)
def _backends(settings):
    if BACKEND not in settings.AUTHENTICATION_BACKENDS:
        settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, BACKEND]


@pytest.fixture
def fake(fake_wecom, settings):
    fake_wecom.add_user("ps", "攻击者")
    fake_wecom.add_user("lisi", "李四")
    settings.WECOM_API_BASE = fake_wecom.api_base
    return fake_wecom


@pytest.fixture
def world(fake):
    """Tenant ``acme`` open for sign-up with its tenant admin, and the superuser ``ops`` outside it."""
    tenant = make_tenant("acme", "Acme Ltd")
    config_from_fake(tenant, fake, allow_signup=True)
    admin = make_tenant_admin("tadmin", tenant)
    superuser = make_user("ops", superuser=True)
    return tenant, admin, superuser


def admin_client(user):
    client = Client(headers={"accept-language": "en"})
    client.force_login(user)
    return client


def browser():
    return Client(headers={"accept-language": "en"})


def sign_in(fake, tenant, userid):
    """A WeCom sign-in of ``userid`` over our callback; returns (response, the session's user)."""
    client = browser()
    response = callback(client, fake.issue_oauth_code(userid=userid), qr_state(client, tenant))
    return response, session_user(client)


def set_house_number(client, tenant, code):
    return client.post(
        reverse("admin:tenants_tenant_change", args=[tenant.pk]), {"name": tenant.name, "code": code}
    )


def approve_pending(client, tenant):
    pending = Membership.objects.filter(tenant=tenant, status=Membership.Status.PENDING)
    return client.post(
        reverse("admin:tenants_membership_changelist"),
        {"action": "approve", "_selected_action": [m.pk for m in pending]},
    )


# The attack, end to end ----------------------------------------------------------------------------


def test_the_whole_attack_never_signs_in_as_the_superuser(world, fake):
    tenant, admin, superuser = world
    client = admin_client(admin)

    set_house_number(client, tenant, "o")
    sign_in(fake, tenant, "ps")
    approve_pending(client, tenant)
    response, user = sign_in(fake, tenant, "ps")

    assert user.pk != superuser.pk
    assert not user.is_superuser and not user.is_staff
    assert not Binding.objects.filter(user=superuser).exists()
    assert not Membership.objects.filter(user=superuser).exists()


# Each step on its own ------------------------------------------------------------------------------


def test_a_tenant_admin_cannot_change_the_house_number(world):
    tenant, admin, _superuser = world
    client = admin_client(admin)

    page = client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk]))
    assert page.status_code == 200
    assert "code" not in page.context["adminform"].form.fields  # shown read-only

    set_house_number(client, tenant, "o")
    tenant.refresh_from_db()
    assert tenant.code == "acme"


def test_a_superuser_sets_the_house_number_until_the_tenant_has_members(world):
    _tenant, _admin, superuser = world
    client = admin_client(superuser)
    fresh = make_tenant("new1", "New tenant")

    assert set_house_number(client, fresh, "n1").status_code == 302
    fresh.refresh_from_db()
    assert fresh.code == "n1"

    make_member(make_user("first"), fresh)
    set_house_number(client, fresh, "o")
    fresh.refresh_from_db()
    assert fresh.code == "n1"


def test_signup_never_takes_over_an_existing_account(world, fake):
    """The house number is ``o`` (as a superuser may have set it): ``ps`` gets an account of its own."""
    tenant, _admin, superuser = world
    tenant.code = "o"
    tenant.save()

    response, user = sign_in(fake, tenant, "ps")

    assert response.status_code == 302
    assert user.pk != superuser.pk and user.username.startswith("ops-")
    assert not user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert Binding.objects.get(tenant=tenant, wecom_user__userid="ps").user == user
    assert Membership.objects.get(user=user, tenant=tenant).status == Membership.Status.ACTIVE
    assert not Membership.objects.filter(user=superuser).exists()
    assert not Binding.objects.filter(user=superuser).exists()
    superuser.refresh_from_db()
    assert superuser.check_password("pw-123456!")
    record = AuditLog.objects.get(tenant=tenant, action=AuditLog.Action.CREATE_ACCOUNT, target_user=user)
    assert record.detail["wanted_username"] == "ops"


def test_signup_of_an_existing_ordinary_name_gets_a_new_account_too(world, fake):
    tenant, _admin, _superuser = world
    existing = make_user("acmelisi")

    response, user = sign_in(fake, tenant, "lisi")

    assert response.status_code == 302
    assert user.pk != existing.pk and user.username == "acmelisi-2"
    assert not Membership.objects.filter(user=existing).exists()
    # Signing in again is the same new account.
    assert sign_in(fake, tenant, "lisi")[1] == user


def test_variants_skip_every_name_in_use(world, fake):
    tenant, _admin, _superuser = world
    for name in ["acmelisi", *(f"acmelisi-{n}" for n in range(2, 10))]:
        make_user(name)

    _response, user = sign_in(fake, tenant, "lisi")

    assert user.username.startswith("acmelisi-") and len(user.username) == len("acmelisi-") + 8
    assert User.objects.filter(username__startswith="acmelisi").count() == 10


def test_approving_a_pending_membership_does_not_open_wecom_sign_in_to_the_account(world, fake):
    """Whatever is pending in the tenant, a WeCom member reaches only the account bound to it."""
    tenant, admin, superuser = world
    make_member(superuser, tenant, status=Membership.Status.PENDING)
    tenant.code = "o"
    tenant.save()

    approve_pending(admin_client(admin), tenant)
    _response, user = sign_in(fake, tenant, "ps")

    assert user.pk != superuser.pk


def test_a_bound_staff_account_is_not_bound_by_signup(world, fake):
    tenant, _admin, _superuser = world
    staff = make_user("acmeps", staff=True)
    make_member(staff, tenant)

    _response, user = sign_in(fake, tenant, "ps")

    assert user.pk != staff.pk and not user.is_staff
    assert not Binding.objects.filter(user=staff).exists()


def test_signup_refuses_to_bind_a_privileged_account_in_the_service(world):
    tenant, _admin, superuser = world
    member = WeComUser.objects.create(tenant=tenant, userid="ps", name="攻击者")
    with pytest.raises(bindings.BindingError) as refused:
        bindings.bind(tenant, superuser, member, source=bindings.SOURCE_SIGN_IN)
    assert refused.value.code == "privileged_account"


# The same through a sync confirm -------------------------------------------------------------------


@pytest.fixture
def review(world):
    tenant, admin, superuser = world
    tenant.code = "o"
    tenant.save()
    WeComUser.objects.create(tenant=tenant, userid="ps", name="攻击者")
    run = sync.create_run(tenant, actor=admin)
    run.status = run.Status.REVIEW
    run.save(update_fields=["status"])
    sync.build_proposals(run)
    return tenant, admin, superuser, run


def test_sync_create_never_binds_the_existing_account_of_its_default_name(review):
    tenant, admin, superuser, run = review

    counts = sync.confirm_run(run, actor=admin, create_unmatched=True)

    assert counts["created"] == 1 and counts["pending"] == 0
    binding = Binding.objects.get(tenant=tenant, wecom_user__userid="ps")
    assert binding.user != superuser and binding.user.username == "ops-2"
    assert not Membership.objects.filter(user=superuser).exists()


def test_sync_create_with_a_name_in_use_is_refused(review):
    _tenant, admin, superuser, run = review
    with pytest.raises(sync.ConfirmError) as refused:
        sync.confirm_run(run, actor=admin, decisions=[sync.Decision("ps", "create", "ops")])
    assert refused.value.errors[0]["code"] == "username_taken"
    assert not Binding.objects.filter(user=superuser).exists()


def test_a_tenant_admin_cannot_bind_a_superuser_through_the_sync(review):
    _tenant, admin, superuser, run = review
    with pytest.raises(sync.ConfirmError) as refused:
        sync.confirm_run(run, actor=admin, decisions=[sync.Decision("ps", "bind", "ops")])
    assert refused.value.errors[0]["code"] == "privileged_account"
    assert not Binding.objects.filter(user=superuser).exists()
    assert not Membership.objects.filter(user=superuser).exists()


def test_a_tenant_admin_cannot_bind_a_superuser_through_the_review_screen(review):
    tenant, admin, superuser, run = review
    client = admin_client(admin)
    proposal = run.proposals.get(wecom_user__userid="ps")
    client.post(
        reverse("admin:wecom_integration_syncrun_review", args=[run.pk]),
        {
            "proposal": [proposal.pk],
            f"action-{proposal.pk}": "bind",
            f"username-{proposal.pk}": "ops",
            f"wecom-{proposal.pk}": "ps",
            "confirm": "1",
        },
    )
    approve_pending(client, tenant)
    assert not Binding.objects.filter(user=superuser).exists()
    assert not Membership.objects.filter(user=superuser).exists()


def test_a_superuser_may_bind_their_own_account_through_the_sync(review, fake):
    tenant, _admin, superuser, run = review
    sync.confirm_run(run, actor=superuser, decisions=[sync.Decision("ps", "bind", "ops")])
    assert Binding.objects.get(tenant=tenant, wecom_user__userid="ps").user == superuser


# The same through a manual bind --------------------------------------------------------------------


def test_a_tenant_admin_cannot_bind_a_staff_account_by_hand(world):
    """The superuser is pending in the tenant (so the form offers it): binding it is still refused."""
    tenant, admin, superuser = world
    make_member(superuser, tenant, status=Membership.Status.PENDING)
    member = WeComUser.objects.create(tenant=tenant, userid="ps", name="攻击者")
    client = admin_client(admin)

    answer = client.post(
        reverse("admin:wecom_integration_binding_add"),
        {"tenant": tenant.pk, "user": superuser.pk, "wecom_user": member.pk},
    )

    assert answer.status_code == 200
    assert "superuser" in str(answer.context["adminform"].form.non_field_errors())
    assert not Binding.objects.filter(user=superuser).exists()
    with pytest.raises(bindings.BindingError):
        bindings.bind(tenant, superuser, member, actor=admin, source="admin")


def test_a_tenant_admin_may_bind_an_ordinary_member_and_themselves(world):
    tenant, admin, _superuser = world
    ordinary = make_user("zhang")
    make_member(ordinary, tenant)
    first = WeComUser.objects.create(tenant=tenant, userid="zhangsan", name="张三")
    second = WeComUser.objects.create(tenant=tenant, userid="boss", name="老板")

    assert bindings.bind(tenant, ordinary, first, actor=admin, source="admin").user == ordinary
    assert bindings.bind(tenant, admin, second, actor=admin, source="admin").user == admin


def test_a_superuser_may_bind_a_staff_account_by_hand(world):
    tenant, admin, superuser = world
    member = WeComUser.objects.create(tenant=tenant, userid="boss", name="老板")
    client = admin_client(superuser)
    answer = client.post(
        reverse("admin:wecom_integration_binding_add"),
        {"tenant": tenant.pk, "user": admin.pk, "wecom_user": member.pk},
    )
    assert answer.status_code == 302
    assert Binding.objects.get(tenant=tenant, user=admin).wecom_user == member


# Bindings left by sign-up before the fix -----------------------------------------------------------


def legacy_signup_binding(tenant, user, userid):
    """What sign-up did before issue 16: bind an existing account, audited as a sign-in bind."""
    member = WeComUser.objects.create(tenant=tenant, userid=userid, name=userid)
    make_member(user, tenant, status=Membership.Status.ACTIVE)  # "approved" by the tenant admin
    binding = Binding.objects.create(tenant=tenant, user=user, wecom_user=member)
    bindings.audit(tenant.pk, AuditLog.Action.BIND, target_user=user, wecom_userid=userid, source="sign-in")
    return binding


def test_a_binding_left_by_the_old_signup_never_signs_in(world, fake):
    tenant, _admin, superuser = world
    legacy_signup_binding(tenant, superuser, "ps")

    response, user = sign_in(fake, tenant, "ps")

    assert response.status_code == 403 and refusal(response) == "not_bound"
    assert not user.is_authenticated


def test_the_same_pair_bound_again_by_a_superuser_signs_in(world, fake):
    tenant, _admin, superuser = world
    binding = legacy_signup_binding(tenant, superuser, "ps")
    bindings.unbind(binding, actor=superuser)
    bindings.bind(tenant, superuser, WeComUser.objects.get(tenant=tenant, userid="ps"), actor=superuser)

    response, user = sign_in(fake, tenant, "ps")

    assert response.status_code == 302 and user == superuser


def test_an_account_made_by_signup_keeps_signing_in(world, fake):
    tenant, _admin, _superuser = world
    first = sign_in(fake, tenant, "lisi")[1]
    response, again = sign_in(fake, tenant, "lisi")
    assert response.status_code == 302 and again == first


def test_name_matching_never_proposes_a_staff_account(review):
    tenant, admin, superuser, run = review
    WeComUser.objects.create(tenant=tenant, userid="boss", name="Big Boss")
    staff = make_user("bigboss", staff=True, first_name="Big", last_name="Boss")
    make_member(staff, tenant)

    sync.build_proposals(run)

    proposal = run.proposals.get(wecom_user__userid="boss")
    assert proposal.user is None and proposal.action != "bind"
    sync.confirm_run(run, actor=admin, accept_proposals=True)
    assert not Binding.objects.filter(user=staff).exists()
