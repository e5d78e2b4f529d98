"""Creating and describing a tenant's WeCom configuration (the admin and ``wecom_configure`` use this)."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse

from wecom_integration import tenancy
from wecom_integration.conf import absolute_url, public_base_url, wecom_settings  # noqa: F401  (their home before)
from wecom_integration.extension import get_adapter
from wecom_integration.models import WeComConfig

CALLBACK_URL_NAMES = {
    "app": "wecom_integration:callback-app",
    "contacts": "wecom_integration:callback-contacts",
    "customers": "wecom_integration:callback-customers",
}


def callback_urls(tenant_id, request=None, base_url=None):
    """The three URLs to paste into WeCom, by kind (paths only when no public origin is known)."""
    return {
        kind: absolute_url(reverse(name, kwargs={"tenant_id": tenant_id}), request, base_url)
        for kind, name in CALLBACK_URL_NAMES.items()
    }


def configure_tenant(*, tenant_code=None, tenant_id=None, tenant_name=None, admin_username=None, values):
    """Create or update a tenant and its configuration; idempotent.

    ``tenant_id`` names an existing row of ``WECOM_TENANT_MODEL`` (a host's own organisation model
    included); ``tenant_code`` finds or creates a ``tenants.Tenant`` by its house number (default model only).

    ``values`` maps WeComConfig field names to values; missing or None values keep what is stored.
    Raises ValidationError with the model's messages when a value is invalid; nothing is saved then.
    """
    User = get_user_model()
    with transaction.atomic():
        if tenant_id is not None:
            tenant = tenancy.get_tenant_model()._default_manager.filter(pk=tenant_id).first()
            if tenant is None:
                raise ValidationError({"tenant": [f"No tenant with id {tenant_id!r}."]})
        elif not tenancy.uses_default_tenant_model():
            raise ValidationError({"tenant": ["WECOM_TENANT_MODEL names the host's model: give --tenant-id."]})
        else:
            tenant, _created = tenancy.get_tenant_model()._default_manager.get_or_create(
                code=tenant_code, defaults={"name": tenant_name or tenant_code}
            )
        if tenant_name and hasattr(tenant, "name") and tenant.name != tenant_name:
            tenant.name = tenant_name
            tenant.save(update_fields=["name"])
        config = WeComConfig.objects.filter(tenant=tenant).first() or WeComConfig(tenant=tenant)
        for field, value in values.items():
            if value is not None:
                setattr(config, field, value)
        config.full_clean()
        config.save()
        if admin_username:
            try:
                user = User.objects.get(**{User.USERNAME_FIELD: admin_username})
            except User.DoesNotExist:
                raise ValidationError({"admin": [f"No user named {admin_username!r}."]}) from None
            get_adapter().make_tenant_admin(user, tenant)
            if not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
    return tenant, config
