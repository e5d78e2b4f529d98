"""The tenant model and the default membership backend (issue 24).

Every tenant foreign key of the app points at the model named by the top-level setting
``WECOM_TENANT_MODEL`` ("app_label.ModelName", like ``AUTH_USER_MODEL``; default ``"tenants.Tenant"``).
:func:`get_tenant_model` returns it, as ``get_user_model()`` does for users.

Who may do what in a tenant is asked through the adapter (:mod:`wecom_integration.login.adapter`); its default
answers come from :class:`MembershipBackend` here, which reads and writes ``tenants.Membership`` while the
default tenant model is in use. This is the only module of ``wecom_integration`` that imports ``tenants``
(lazily): a host with its own organisations need not install it, and a host package named ``tenants``
is never imported by mistake. With a host's model and no adapter overrides, no one but a superuser is a
member or an admin and the sync creates no memberships: the host overrides the adapter's methods.
"""

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import connections, router, transaction
from django.utils import timezone

from wecom_integration.bulk import insert_rows, one_of

DEFAULT_TENANT_MODEL = "tenants.Tenant"
SETTING = "WECOM_TENANT_MODEL"

# Membership states, as the adapter speaks of them (the values of tenants.Membership.Status).
ACTIVE = "active"
PENDING = "pending"
REJECTED = "rejected"
INACTIVE = "inactive"
#: Every state but rejected: the accounts a tenant admin may bind to its WeCom members.
BINDABLE = (ACTIVE, PENDING, INACTIVE)


def ensure_setting():
    """Give ``settings.WECOM_TENANT_MODEL`` its default when the host does not set it: the migrations
    read it (``migrations.swappable_dependency(settings.WECOM_TENANT_MODEL)``)."""
    if not hasattr(settings, SETTING):
        setattr(settings, SETTING, DEFAULT_TENANT_MODEL)


def tenant_model_label():
    """The ``app_label.ModelName`` of the tenant model."""
    return getattr(settings, SETTING, DEFAULT_TENANT_MODEL)


def uses_default_tenant_model():
    return tenant_model_label().lower() == DEFAULT_TENANT_MODEL.lower()


def get_tenant_model():
    """The tenant model class named by ``WECOM_TENANT_MODEL``."""
    label = tenant_model_label()
    try:
        return apps.get_model(label, require_ready=False)
    except ValueError:
        raise ImproperlyConfigured(f"{SETTING} must be of the form 'app_label.model_name', not {label!r}.") from None
    except LookupError:
        raise ImproperlyConfigured(f"{SETTING} refers to model {label!r}, which is not installed.") from None


def default_tenant_id():
    """The tenant an API request without ``X-Tenant-Id`` acts in: ``WECOM["DEFAULT_TENANT_ID"]`` when set,
    else JeecgBoot's 0 with the default tenant model (a data migration creates that tenant) and none
    (the header is required) with a host's model."""
    from wecom_integration.conf import wecom_settings

    configured = wecom_settings.DEFAULT_TENANT_ID
    if configured is not None:
        return configured
    if uses_default_tenant_model():
        from tenants.models import DEFAULT_TENANT_ID

        return DEFAULT_TENANT_ID
    return None


def tenant_name(tenant):
    """What a tenant is called on screens: its ``name`` field where the model has one, else ``str()``."""
    return str(getattr(tenant, "name", "") or tenant)


def tenant_search_fields(relation="tenant"):
    """Admin search lookups for a tenant foreign key: ``name`` and ``code`` where the tenant model has them."""
    names = []
    for name in ("name", "code"):
        try:
            get_tenant_model()._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        names.append(f"{relation}__{name}")
    return tuple(names)


def tenants_ordered(queryset):
    """A tenant queryset in the model's own order, or by primary key."""
    return queryset.order_by(*(queryset.model._meta.ordering or ["pk"]))


def membership_backend():
    """The membership backend for the tenant model in use."""
    return MembershipBackend() if uses_default_tenant_model() else NoMembershipBackend()


class NoMembershipBackend:
    """A host's tenant model without adapter overrides: no memberships are known or kept."""

    def member_user_ids(self, tenant, statuses=(ACTIVE,)):
        return get_user_model().objects.none().values("pk")

    def membership_statuses(self, tenant, user_ids):
        return {}

    def set_memberships(self, tenant, statuses):
        return 0

    def deactivate_memberships(self, tenant_id, user_ids):
        return 0

    def admin_tenant_ids(self, user):
        return set()

    def membership_role(self, user, tenant):
        return None

    def pending_count(self, tenant):
        return 0

    def make_admin(self, user, tenant):
        raise ImproperlyConfigured(
            f"{SETTING} names a host model: make {user} an admin of {tenant} in the host's own memberships."
        )


class MembershipBackend:
    """Memberships in ``tenants.Membership`` (the default tenant model). Bulk: no query per user."""

    @staticmethod
    def model():
        from tenants.models import Membership

        return Membership

    def member_user_ids(self, tenant, statuses=(ACTIVE,)):
        """A queryset of the ids of users whose membership of ``tenant`` is in one of ``statuses``."""
        return self.model().objects.filter(tenant=tenant, status__in=statuses).values("user_id")

    def membership_statuses(self, tenant, user_ids):
        """{user id: state} of these users' memberships of ``tenant`` (users without one are absent)."""
        return dict(
            self.model().objects.filter(one_of("user_id", user_ids), tenant=tenant).values_list("user_id", "status")
        )

    def set_memberships(self, tenant, statuses):
        """Give the users of ``statuses`` ({user id: state}) that state in ``tenant``, creating memberships
        that do not exist; returns how many changed."""
        if not statuses:
            return 0
        Membership = self.model()
        if connections[router.db_for_write(Membership)].features.supports_update_conflicts_with_target:
            # One INSERT … ON CONFLICT DO UPDATE: no lookup of the existing memberships first. A confirm
            # adds up to 100,000 memberships in one transaction, and the lookup, planned on the table's
            # statistics from before it, scanned every membership of the tenant for each chunk (issue 19).
            return insert_rows(Membership, ("user_id", "status"), statuses.items(), constants={"tenant": tenant},
                               update_conflicts=(("user", "tenant"), ("status", "updated_at"), ("status",)))
        existing = {m.user_id: m for m in Membership.objects.filter(one_of("user_id", statuses), tenant=tenant)}
        now = timezone.now()
        # Plain rows rather than instances: the sync's confirm makes one for each of up to 100,000 accounts.
        new = [(uid, st) for uid, st in statuses.items() if uid not in existing]
        changed = []
        for uid, membership in existing.items():
            if membership.status != statuses[uid]:
                membership.status, membership.updated_at = statuses[uid], now
                changed.append(membership)
        insert_rows(Membership, ("user_id", "status"), new, constants={"tenant": tenant})
        Membership.objects.bulk_update(changed, ["status", "updated_at"], batch_size=500)
        return len(new) + len(changed)

    def deactivate_memberships(self, tenant_id, user_ids):
        """Active memberships of these users in the tenant become inactive; returns how many."""
        return (
            self.model()
            .objects.filter(tenant_id=tenant_id, user_id__in=list(user_ids), status=ACTIVE)
            .update(status=INACTIVE, updated_at=timezone.now())
        )

    def admin_tenant_ids(self, user):
        Membership = self.model()
        return set(
            Membership.objects.active()
            .filter(user=user, role=Membership.Role.ADMIN)
            .values_list("tenant_id", flat=True)
        )

    def membership_role(self, user, tenant):
        return self.model().objects.filter(user=user, tenant=tenant).values_list("role", flat=True).first()

    def pending_count(self, tenant):
        return self.model().objects.filter(tenant=tenant, status=PENDING).count()

    def make_admin(self, user, tenant):
        Membership = self.model()
        with transaction.atomic():
            Membership.objects.update_or_create(
                user=user, tenant=tenant, defaults={"role": Membership.Role.ADMIN, "status": ACTIVE}
            )


def connect_default_backend(hook):
    """With the default tenant model, call ``hook`` on each of ``tenants``' membership decisions (the app
    passes the directory's audit-log writer; this foundation imports no room)."""
    if not uses_default_tenant_model() or not apps.is_installed("tenants"):
        return
    from tenants import services as tenant_services

    if hook not in tenant_services.decision_hooks:
        tenant_services.decision_hooks.append(hook)
