"""The directory and sync API: /api/wecom/departments/, /users/, /sync/, /sync/<id>/, /sync/<id>/confirm/."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tenants.models import Membership
from tests.factories import config_from_fake, make_member, make_tenant, make_user
from wecom_integration.directory import sync
from wecom_integration.models import Binding, Department, SyncRun, WeComUser

User = get_user_model()


class Caller:
    """An API client acting as ``user`` in ``tenant`` (X-Access-Token, X-Tenant-Id)."""

    def __init__(self, user, tenant):
        self.client = APIClient()
        self.headers = {
            "HTTP_X_ACCESS_TOKEN": Token.objects.get_or_create(user=user)[0].key,
            "HTTP_X_TENANT_ID": str(tenant.pk),
        }

    def get(self, url, **params):
        return self.client.get(url, params, **self.headers)

    def post(self, url, body=None):
        return self.client.post(url, body or {}, format="json", **self.headers)


@pytest.fixture
def world(db, make_fake_wecom, django_capture_on_commit_callbacks):
    """Two tenants, each with its own fake corp, admin and member; A has been synced."""
    fake_a = make_fake_wecom(users=60, departments=8, seed=1)
    fake_b = make_fake_wecom(users=30, departments=4, seed=2)
    tenant_a, tenant_b = make_tenant("A"), make_tenant("B")
    config_from_fake(tenant_a, fake_a)
    config_from_fake(tenant_b, fake_b)
    people = {}
    for tenant in (tenant_a, tenant_b):
        admin = make_user(f"admin-{tenant.code}", password=None)
        make_member(admin, tenant, role=Membership.Role.ADMIN)
        member = make_user(f"member-{tenant.code}", password=None)
        make_member(member, tenant)
        people[tenant.code] = (Caller(admin, tenant), Caller(member, tenant))
    with override_settings(WECOM={"API_BASE": fake_a.api_base}):
        yield {"a": tenant_a, "b": tenant_b, "fake_a": fake_a, "fake_b": fake_b, "people": people,
               "commit": django_capture_on_commit_callbacks}


def start(world, code="A", body=None):
    admin, _member = world["people"][code]
    with world["commit"](execute=True):
        return admin.post("/api/wecom/sync/", body)


def test_start_runs_the_sync_and_detail_shows_it(world):
    answer = start(world)
    assert answer.status_code == 202, answer.content
    run_id = answer.json()["id"]

    _admin, member = world["people"]["A"]
    detail = member.get(f"/api/wecom/sync/{run_id}/")
    assert detail.status_code == 200
    data = detail.json()
    assert data["status"] == "review" and data["phase"] == "done" and data["progress"] == 1.0
    assert data["counts"]["users"]["created"] == 60
    assert data["errors"] == []
    proposals = data["proposals"]
    assert proposals["count"] == data["counts"]["proposals"]["create"] + data["counts"]["proposals"]["skip"] + \
        data["counts"]["proposals"]["bind"]
    flagged = [p for p in proposals["results"] if p["ambiguous"]]
    assert flagged and all(p["note"] for p in flagged)
    # Ambiguous names come first so the admin sees them.
    assert proposals["results"][0]["ambiguous"]
    assert set(proposals["results"][0]) == {"wecom_userid", "wecom_name", "action", "username", "user_name",
                                            "ambiguous", "note"}
    page2 = member.get(f"/api/wecom/sync/{run_id}/", page=2, page_size=10).json()["proposals"]
    assert page2["page"] == 2 and len(page2["results"]) == 10
    only = member.get(f"/api/wecom/sync/{run_id}/", ambiguous="true").json()["proposals"]
    assert only["count"] == len(flagged) or all(p["ambiguous"] for p in only["results"])


def test_start_while_running_is_409(world):
    sync.create_run(world["a"])
    answer = start(world)
    assert answer.status_code == 409
    assert answer.json()["run"] == SyncRun.objects.get(tenant=world["a"], status="pending").pk
    # The other tenant is not blocked.
    assert start(world, "B").status_code == 202


def test_customer_sync_can_be_started_by_kind(world):
    answer = start(world, body={"kind": "customers"})
    assert answer.status_code == 202
    assert SyncRun.objects.get(pk=answer.json()["id"]).kind == "customers"
    assert start(world, body={"kind": "nonsense"}).status_code == 400


def test_members_may_read_but_not_start_or_confirm(world):
    _admin, member = world["people"]["A"]
    assert member.post("/api/wecom/sync/").status_code == 403
    run = sync.execute_contact_run(sync.create_run(world["a"]).pk)
    assert member.post(f"/api/wecom/sync/{run.pk}/confirm/", {"accept_proposals": True}).status_code == 403
    assert member.get("/api/wecom/sync/").status_code == 200


def test_list_of_runs_is_the_tenants_history(world):
    start(world)
    start(world, "B")
    admin_a, _ = world["people"]["A"]
    runs = admin_a.get("/api/wecom/sync/").json()
    assert runs["count"] == 1
    assert runs["results"][0]["kind"] == "contacts"


def test_confirm_common_case(world):
    run_id = start(world).json()["id"]
    admin, _ = world["people"]["A"]

    answer = admin.post(f"/api/wecom/sync/{run_id}/confirm/", {"accept_proposals": True, "create_unmatched": True})

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["run"]["status"] == "confirmed"
    assert body["counts"]["created"] == body["counts"]["bound"] > 0
    assert User.objects.filter(username__startswith="A").count() >= body["counts"]["created"]
    # Confirming again: the run is no longer waiting for review.
    again = admin.post(f"/api/wecom/sync/{run_id}/confirm/", {"accept_proposals": True})
    assert again.status_code == 409


def test_confirm_with_decisions(world):
    run_id = start(world).json()["id"]
    admin, _ = world["people"]["A"]
    userids = list(
        WeComUser.objects.filter(tenant=world["a"], status=1).order_by("userid").values_list("userid", flat=True)[:3]
    )
    target = make_user("existing", password=None)
    make_member(target, world["a"])

    answer = admin.post(
        f"/api/wecom/sync/{run_id}/confirm/",
        {"decisions": [
            {"wecom_userid": userids[0], "action": "bind", "username": "existing"},
            {"wecom_userid": userids[1], "action": "create"},
            {"wecom_userid": userids[2], "action": "create", "username": "custom-name"},
        ]},
    )

    assert answer.status_code == 200, answer.content
    assert answer.json()["counts"]["bound"] == 3
    assert Binding.objects.get(tenant=world["a"], user=target).wecom_user.userid == userids[0]
    assert Binding.objects.filter(tenant=world["a"], user__username=f"A{userids[1]}").exists()
    assert Binding.objects.filter(tenant=world["a"], user__username="custom-name").exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"decisions": [{"wecom_userid": "x", "action": "explode"}]},
        {"decisions": [{"wecom_userid": "x", "action": "bind"}]},  # bind without username
        {"decisions": [{"wecom_userid": "x", "action": "skip"}, {"wecom_userid": "x", "action": "create"}]},
    ],
)
def test_confirm_body_validation(world, body):
    run_id = start(world).json()["id"]
    admin, _ = world["people"]["A"]
    assert admin.post(f"/api/wecom/sync/{run_id}/confirm/", body).status_code == 400


def test_confirm_failure_reports_each_bad_decision_and_changes_nothing(world):
    run_id = start(world).json()["id"]
    admin, _ = world["people"]["A"]
    first, second = WeComUser.objects.filter(tenant=world["a"], status=1).order_by("userid")[:2]
    bindings = Binding.objects.count()
    users = User.objects.count()

    answer = admin.post(
        f"/api/wecom/sync/{run_id}/confirm/",
        {"decisions": [
            {"wecom_userid": first.userid, "action": "create"},
            {"wecom_userid": second.userid, "action": "bind", "username": "no-such-user"},
        ]},
    )

    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert errors == [{"wecom_userid": second.userid, "username": "no-such-user", "code": "unknown_user",
                       "message": errors[0]["message"]}]
    assert (Binding.objects.count(), User.objects.count()) == (bindings, users)


def test_departments_are_the_flat_tree(world):
    start(world)
    admin, _ = world["people"]["A"]
    answer = admin.get("/api/wecom/departments/")
    assert answer.status_code == 200
    rows = answer.json()
    assert len(rows) == len(world["fake_a"].org.departments)
    root = next(r for r in rows if r["id"] == 1)
    assert root["parent_id"] == 0
    ids = {r["id"] for r in rows}
    assert all(r["parent_id"] in ids for r in rows if r["id"] != 1)
    Department.objects.filter(tenant=world["a"], dept_id=rows[-1]["id"]).update(removed=True)
    assert len(admin.get("/api/wecom/departments/").json()) == len(rows) - 1


def test_users_search_bound_filter_and_pagination(world):
    run_id = start(world).json()["id"]
    admin, member = world["people"]["A"]
    org = world["fake_a"].org
    some = sorted(org.users.values(), key=lambda u: u.userid)[0]
    bound_user = make_user("bound-one", password=None)
    make_member(bound_user, world["a"])
    Binding.objects.create(tenant=world["a"], user=bound_user, wecom_user=WeComUser.objects.get(userid=some.userid))

    page = member.get("/api/wecom/users/").json()
    assert page["count"] == 60 and len(page["results"]) == 60
    row = next(r for r in page["results"] if r["userid"] == some.userid)
    assert row["bound_username"] == "bound-one" and row["binding_active"] is True
    assert row["departments"] == list(some.departments)
    assert {r["bound_username"] for r in page["results"] if r["userid"] != some.userid} == {None}

    bound = member.get("/api/wecom/users/", bound="true").json()
    assert [r["userid"] for r in bound["results"]] == [some.userid]
    unbound = member.get("/api/wecom/users/", bound="false").json()
    assert unbound["count"] == 59

    found = member.get("/api/wecom/users/", search=some.name).json()
    assert some.userid in [r["userid"] for r in found["results"]]
    assert all(some.name in r["name"] or some.name in r["userid"] for r in found["results"])

    first = member.get("/api/wecom/users/", page_size=25).json()
    third = member.get("/api/wecom/users/", page=3, page_size=25).json()
    assert len(first["results"]) == 25 and first["next"]
    assert len(third["results"]) == 10 and third["next"] is None
    assert run_id


def test_tenant_isolation(world):
    run_a = start(world).json()["id"]
    # The API base is one setting; B's corp is another fake, so its client is pointed there explicitly.
    config_b = world["b"].wecom_config
    run_b = sync.execute_contact_run(
        sync.create_run(world["b"]).pk, client=sync.contacts_client(config_b, api_base=world["fake_b"].api_base)
    ).pk
    admin_a, member_a = world["people"]["A"]
    admin_b, member_b = world["people"]["B"]

    # Another tenant's run: 404 for reading and confirming, whoever asks.
    assert member_b.get(f"/api/wecom/sync/{run_a}/").status_code == 404
    assert admin_b.post(f"/api/wecom/sync/{run_a}/confirm/", {"accept_proposals": True}).status_code == 404
    assert member_a.get(f"/api/wecom/sync/{run_b}/").status_code == 404
    # A's members do not show in B, nor A's departments.
    a_ids = set(WeComUser.objects.filter(tenant=world["a"]).values_list("userid", flat=True))
    b_rows = member_b.get("/api/wecom/users/").json()
    assert b_rows["count"] == 30
    b_ids = {r["userid"] for r in b_rows["results"]}
    assert b_ids == set(world["fake_b"].org.users)
    assert b_ids != a_ids
    # The same userid in both corps still lists B's member only.
    shared = a_ids & b_ids
    for userid in list(shared)[:3]:
        rows = member_b.get("/api/wecom/users/", search=userid).json()["results"]
        b_name = world["fake_b"].org.users[userid].name
        assert [r["name"] for r in rows if r["userid"] == userid] == [b_name]
    assert len(member_b.get("/api/wecom/departments/").json()) == len(world["fake_b"].org.departments)
    # A member of A naming tenant B in the header is refused outright.
    member_a.headers["HTTP_X_TENANT_ID"] = str(world["b"].pk)
    assert member_a.get("/api/wecom/users/").status_code == 403
    assert member_a.get(f"/api/wecom/sync/{run_b}/").status_code == 403


def test_unauthenticated_is_401(world):
    client = APIClient()
    assert client.get("/api/wecom/users/").status_code == 401
    assert client.post("/api/wecom/sync/").status_code == 401
