"""bulk.fetch_instances builds the instances Model.objects.raw() builds from the same SELECT: every field's
value as the model reads it (encrypted fields decrypted, JSON decoded), saved and on the connection read
from, and the query is seen by Django's query log like any other."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import make_tenant
from wecom_integration import bulk
from wecom_integration.callbacks import services as callbacks
from wecom_integration.events import parse_event
from wecom_integration.models import CallbackEvent, WeComUser
from wecom_integration.testing.callbacks import build_contact_user_xml

pytestmark = pytest.mark.django_db


def every_column(model):
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in model._meta.concrete_fields)
    return f"SELECT {columns} FROM {quote(model._meta.db_table)} WHERE {quote('tenant_id')} = %s ORDER BY {quote('id')}"


def as_read(instance):
    values = {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}
    return values, instance._state.db, instance._state.adding


def test_members_with_encrypted_and_json_fields_read_as_raw_reads_them():
    tenant = make_tenant("fetch1")
    WeComUser.objects.create(tenant=tenant, userid="a", name="甲", mobile="13800000001", email="a@example.com",
                             departments=[1, 2], is_leader_in_dept=[1, 0], avatar="")
    WeComUser.objects.create(tenant=tenant, userid="b", name='q"\\', mobile="", departments=[])
    sql = every_column(WeComUser)

    fetched = bulk.fetch_instances(WeComUser, sql, [tenant.pk])
    raw = list(WeComUser.objects.raw(sql, [tenant.pk]))

    assert [as_read(user) for user in fetched] == [as_read(user) for user in raw]
    assert fetched[0].mobile == "13800000001" and fetched[0].departments == [1, 2]
    assert (fetched[0]._state.db, fetched[0]._state.adding) == ("default", False)
    fetched[1].name = "changed"
    fetched[1].save(update_fields=["name"])  # a saved instance: an UPDATE, not an INSERT
    assert WeComUser.objects.filter(tenant=tenant).count() == 2
    assert WeComUser.objects.get(tenant=tenant, userid="b").name == "changed"


def test_callback_events_with_a_passive_reply_read_as_raw_reads_them():
    tenant = make_tenant("fetch2")
    event = parse_event(build_contact_user_xml("wwcorp", "create_user", {"userid": "m1", "name": "n"}, 1_700_000_000))
    callbacks.store_event(tenant.pk, "contacts", event, reply={"type": "text", "content": "你好"})
    callbacks.store_event(tenant.pk, "contacts", parse_event(event.xml.replace("m1", "m2")))
    sql = every_column(CallbackEvent)

    fetched = bulk.fetch_instances(CallbackEvent, sql, [tenant.pk])

    assert [as_read(row) for row in fetched] == [as_read(row) for row in CallbackEvent.objects.raw(sql, [tenant.pk])]
    assert [row.reply for row in fetched] == [{"type": "text", "content": "你好"}, None]


def test_the_query_is_logged_and_a_select_of_other_columns_is_refused():
    tenant = make_tenant("fetch3")
    WeComUser.objects.create(tenant=tenant, userid="a", name="甲")
    with CaptureQueriesContext(connection) as queries:
        assert [user.userid for user in bulk.fetch_instances(WeComUser, every_column(WeComUser), [tenant.pk])] == ["a"]
    assert len(queries) == 1 and "wecom_integration_wecomuser" in queries[0]["sql"]
    with pytest.raises(ValueError, match="columns"):
        bulk.fetch_instances(WeComUser, "SELECT id, userid FROM wecom_integration_wecomuser", [])
