"""Issue 20 item 6: what a tenant admin reads. A sync's counts, an audit row's detail, a sent message's content
and the mirror's JSON fields show as labelled tables in the admin's language, never as raw JSON; every value
is escaped."""

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import translation

from tests.factories import config_from_fake, make_tenant, make_tenant_admin
from wecom_integration.directory import sync
from wecom_integration.display import label, labelled
from wecom_integration.models import AuditLog, MessageLog, SyncRun, WeComUser

pytestmark = pytest.mark.django_db

COUNTS = {
    "departments": {"created": 3, "updated": 0, "removed": 1, "written": 4},
    "users": {"created": 120, "updated": 2, "removed": 0, "not_visible": 5, "written": 122},
    "proposals": {"bind": 7, "create": 100, "skip": 1, "ambiguous": 2},
    "outside_range": {"users": 2, "userids": ["zhangsan", "lisi"], "departments": 0},
    "rows_written": 126,
    "host_extra_key": True,
}


def test_a_nested_dict_becomes_a_table_of_labelled_rows_in_the_admins_language():
    html = str(labelled(COUNTS))
    assert html.startswith('<table class="wecom-labelled">')
    assert "<th scope=\"row\">Members</th>" in html and "<th scope=\"row\">created</th><td>120</td>" in html
    assert "zhangsan, lisi" in html  # a list of plain values: one line
    assert "host extra key" in html and "yes" in html  # an unknown key keeps its own name; booleans in words
    assert "{" not in html and '"' not in html.replace('"wecom-labelled"', "").replace('"row"', "")
    with translation.override("zh-hans"):
        chinese = str(labelled(COUNTS))
    assert label("users") == "Members"
    assert "成员" in chinese and "Members" not in chinese


def test_every_piece_of_data_is_escaped_keys_and_values():
    html = str(labelled({"<b>key</b>": "<script>alert(1)</script>", "list": ["<i>x</i>"], "empty": []}))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>" not in html and "&lt;b&gt;key" in html and "&lt;i&gt;x" in html
    assert str(labelled({})) == "—" and str(labelled(None)) == "—"


@pytest.fixture
def tenant(fake_wecom):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake_wecom)
    with override_settings(WECOM={"API_BASE": fake_wecom.api_base}):
        yield tenant


@pytest.fixture
def admin_client(client, tenant):
    client.force_login(make_tenant_admin("boss", tenant))
    return client


def test_the_sync_progress_page_shows_its_counts_as_a_labelled_table(admin_client, tenant):
    run = sync.create_run(tenant, SyncRun.Kind.CONTACTS)
    SyncRun.objects.filter(pk=run.pk).update(counts=COUNTS, status=SyncRun.Status.REVIEW)
    page = admin_client.get(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk])).content.decode()
    table = page[page.index('id="sync-counts"'):]
    assert table.index('<table class="wecom-labelled">') < table.index("</dd>")
    assert "Proposals to review" in table and "ambiguous (several accounts match)" in table
    assert "JSON.stringify(state.counts" not in page
    # What the page polls carries the same table, so the labels survive each refresh.
    state = admin_client.get(reverse("admin:wecom_integration_syncrun_progress_json", args=[run.pk])).json()
    assert "Proposals to review" in state["counts_html"] and state["counts"] == COUNTS
    with translation.override("zh-hans"):
        admin_client.cookies["django_language"] = "zh-hans"
        chinese = admin_client.get(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk]),
                                   HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "待审核的建议" in chinese


def test_the_audit_log_list_and_a_sent_messages_page_show_tables_not_json(admin_client, tenant):
    AuditLog.objects.create(tenant=tenant, action=AuditLog.Action.BIND, wecom_userid="zhangsan",
                            detail={"source": "sync", "run": 12})
    page = admin_client.get(reverse("admin:wecom_integration_auditlog_changelist")).content.decode()
    assert '<th scope="row">source</th><td>sync</td>' in page and '{&quot;source' not in page
    log = MessageLog.objects.create(tenant=tenant, msgtype="text", content={"text": {"content": "周会 3 点"}},
                                    touser="zhangsan", invalid_users=["ghost1", "ghost2"])
    page = admin_client.get(reverse("admin:wecom_integration_messagelog_change", args=[log.pk])).content.decode()
    assert "周会 3 点" in page and "ghost1, ghost2" in page
    assert "&quot;content&quot;" not in page and '["ghost1"' not in page and "&quot;ghost1" not in page


def test_a_wecom_members_departments_show_as_a_list(admin_client, tenant):
    member = WeComUser.objects.create(tenant=tenant, userid="zhangsan", name="张三", departments=[1, 7],
                                      is_leader_in_dept=[0, 1])
    page = admin_client.get(reverse("admin:wecom_integration_wecomuser_change", args=[member.pk])).content.decode()
    assert "1, 7" in page and "0, 1" in page and "[1, 7]" not in page
