from django.db import migrations


def create_default_tenant(apps, schema_editor):
    # JeecgBoot's X-Tenant-Id defaults to 0, so tenant 0 always exists.
    Tenant = apps.get_model("tenants", "Tenant")
    Tenant.objects.get_or_create(pk=0, defaults={"name": "Default", "code": "default"})


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(create_default_tenant, migrations.RunPython.noop)]
