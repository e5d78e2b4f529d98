"""The WeCom HTTP client over real HTTP against the fake WeCom server: errcode policy, tokens, rate
budget, API groups. Nothing here mocks requests or the client."""

import io
import math
import os
import pickle
import threading
import time
import traceback
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.test import override_settings

from wecom_integration.client import (
    CacheTokenStore,
    RateBudget,
    WeComClient,
    WeComConfigError,
    WeComError,
    WeComNetworkError,
    WeComNotConfigured,
    WeComRateLimited,
    authorize_url,
    client_for,
    listeners,
    qr_login_url,
    stats,
)
from wecom_integration.client import session as session_module
from wecom_integration.client.base import scrub
from wecom_integration.client.diagnostics import test_connection
from wecom_integration.client.tokens import clear_memo, token_key
from wecom_integration.testing import FakeWeCom

FAST = {"BUSY_BACKOFF": 0.001, "BUSY_RETRIES": 2}


@pytest.fixture(autouse=True)
def _clean_state():
    cache.clear()
    clear_memo()
    stats.reset()
    installed = list(listeners)  # the metrics hook AppConfig.ready() put there must survive
    yield
    listeners[:] = installed
    cache.clear()
    clear_memo()


@pytest.fixture
def fake():
    server = FakeWeCom(users=60, departments=8, seed=7).start()
    with override_settings(WECOM={"API_BASE": server.api_base, **FAST}):
        yield server
    server.stop()


def make_client(fake, kind="app", **kwargs):
    secret = {"app": fake.secret, "contacts": fake.contact_secret, "customers": fake.customer_secret}[kind]
    return WeComClient(fake.corp_id, secret, kind, agent_id=fake.agent_id, **kwargs)


def config_for(fake, **overrides):
    values = {
        "corp_id": fake.corp_id,
        "agent_id": fake.agent_id,
        "secret": fake.secret,
        "contact_secret": fake.contact_secret,
        "customer_secret": fake.customer_secret,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def all_userids(contacts):
    """Every member, walked the way that works for every corp: simplelist per department."""
    userids = set()
    for department in contacts.department.simplelist():
        userids.update(user["userid"] for user in contacts.user.simplelist(department["id"]))
    return userids


def raw_cache_contents():
    """(key, stored bytes) of everything in the default cache, LocMem or Redis."""
    backend = cache._cache
    if isinstance(backend, dict):  # LocMem: full key -> pickled value
        yield from backend.items()
        return
    client = backend.get_client(None)
    for key in client.scan_iter():
        yield key.decode(), client.get(key) or b""


def assert_no_credentials(exc, *credentials):
    texts = [str(exc), repr(exc), exc.errmsg, "".join(traceback.format_exception(exc)), repr(exc.args)]
    for text in texts:
        for credential in credentials:
            assert credential not in text
        assert "access_token=" not in text or "access_token=***" in text


# Tokens -----------------------------------------------------------------------------------------


def test_token_is_reused_across_calls(fake):
    client = make_client(fake, "contacts")
    userid = next(iter(all_userids(client)))
    fake.reset_stats()
    for _ in range(100):
        assert client.user.get(userid)["userid"] == userid
    assert fake.gettoken_calls["contacts"] == 0
    assert fake.calls["user/get"] == 100


def test_one_gettoken_for_many_calls_from_cold_cache(fake):
    client = make_client(fake)
    for _ in range(100):
        client.department.simplelist()
    assert fake.gettoken_calls["app"] == 1
    assert stats.gettoken_count == 1


def test_new_client_objects_share_the_stored_token(fake):
    for _ in range(5):
        make_client(fake).department.simplelist()
    clear_memo()  # another process: only the cache is shared
    make_client(fake).department.simplelist()
    assert fake.gettoken_calls["app"] == 1


def test_token_refreshed_ahead_of_expiry(fake):
    fake.stop()
    short = FakeWeCom(users=5, departments=2, seed=7, token_ttl=4).start()
    try:
        with override_settings(WECOM={"API_BASE": short.api_base, "TOKEN_REFRESH_MARGIN": 2, **FAST}):
            client = make_client(short)
            client.department.simplelist()
            # The token is kept 4 - 2 = 2 s; past that the client fetches a new one before WeCom's expiry.
            time.sleep(2.2)
            client.department.simplelist()
            assert short.gettoken_calls["app"] == 2
            # Never sent a dead token: no expired/invalid answers were seen.
            assert not {40014, 42001} & set(stats.errors_by_code)
    finally:
        short.stop()


def test_single_flight_across_threads(fake):
    barrier = threading.Barrier(16)
    errors = []

    def work():
        client = make_client(fake, "contacts")
        barrier.wait()
        try:
            for _ in range(5):
                client.department.simplelist()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fake.gettoken_calls["contacts"] == 1
    assert fake.calls["department/simplelist"] == 80


def test_single_flight_across_processes_of_one_cache(fake):
    # Each thread has its own memo-less view: only the store's lock can keep gettoken to one call.
    barrier = threading.Barrier(8)
    errors = []

    def work():
        client = make_client(fake)
        barrier.wait()
        try:
            client.tokens._fetch_single_flight(5.0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fake.gettoken_calls["app"] == 1


def test_each_secret_has_its_own_token(fake):
    app, contacts, customers = (make_client(fake, kind) for kind in ("app", "contacts", "customers"))
    app.department.simplelist()
    contacts.department.simplelist()
    customers.externalcontact.list(next(iter(all_userids(contacts))))
    assert fake.gettoken_calls == {"app": 1, "contacts": 1, "customers": 1}
    assert len({app.access_token, contacts.access_token, customers.access_token}) == 3
    assert len({app.tokens.key, contacts.tokens.key, customers.tokens.key}) == 3


def test_cache_holds_no_secret(fake):
    client = make_client(fake, "contacts")
    client.department.simplelist()
    key = client.tokens.key
    assert fake.contact_secret not in key
    assert fake.corp_id in key and "contacts" in key
    assert key == token_key(fake.corp_id, "contacts", fake.contact_secret, fake.api_base)
    stored = pickle.dumps(CacheTokenStore().get(key))
    assert fake.contact_secret.encode() not in stored
    # Nothing else in the cache holds it either, in whatever form the backend stores it.
    contents = list(raw_cache_contents())
    assert any(client.tokens.key in cache_key for cache_key, _ in contents)
    for cache_key, value in contents:
        assert fake.contact_secret not in cache_key
        assert fake.contact_secret.encode() not in value


def test_invalidate_token_drops_memory_and_store(fake):
    client = make_client(fake)
    client.department.simplelist()
    client.invalidate_token()
    assert CacheTokenStore().get(client.tokens.key) is None
    client.department.simplelist()
    assert fake.gettoken_calls["app"] == 2


# Errcode policy ---------------------------------------------------------------------------------


def test_invalidated_token_is_refreshed_once_and_the_call_succeeds(fake):
    client = make_client(fake)
    client.department.simplelist()
    fake.invalidate_tokens()
    fake.reset_stats()
    assert client.department.simplelist()
    assert fake.gettoken_calls["app"] == 1
    assert fake.calls["department/simplelist"] == 2
    assert stats.retries["token"] == 1


def test_token_errors_are_retried_once_only(fake):
    client = make_client(fake)
    client.department.simplelist()
    fake.reset_stats()
    fake.set_faults(error_rate=1.0, errcodes=(40014,), paths=["department/simplelist"])
    with pytest.raises(WeComError) as info:
        client.department.simplelist()
    assert info.value.errcode == 40014
    assert fake.calls["department/simplelist"] == 2
    assert fake.gettoken_calls["app"] == 1


def test_system_busy_is_retried_with_a_bound(fake):
    client = make_client(fake)
    client.department.simplelist()
    fake.reset_stats()
    fake.set_faults(error_rate=1.0, errcodes=(-1,), paths=["department/simplelist"])
    with pytest.raises(WeComError) as info:
        client.department.simplelist()
    assert info.value.errcode == -1
    assert fake.calls["department/simplelist"] == 1 + FAST["BUSY_RETRIES"]
    fake.clear_faults()
    assert client.department.simplelist()


def test_system_busy_then_success(fake):
    client = make_client(fake)
    client.department.simplelist()
    fake.set_faults(error_rate=1.0, errcodes=(-1,), paths=["department/simplelist"])
    # WeCom recovers while the client backs off: the retry then succeeds.
    listeners.append(lambda event, data: event == "retry" and fake.clear_faults())
    fake.reset_stats()
    assert client.department.simplelist()
    assert fake.calls["department/simplelist"] == 2
    assert stats.retries["busy"] == 1


def test_frequency_limit_raises_rate_limited(fake):
    client = make_client(fake)
    fake.set_faults(error_rate=1.0, errcodes=(45009,), paths=["department/simplelist"])
    fake.reset_stats()
    with pytest.raises(WeComRateLimited) as info:
        client.department.simplelist()
    assert info.value.errcode == 45009
    assert info.value.retry_after >= 60
    # Not retried: retrying inside the minute only prolongs WeCom's block.
    assert fake.calls["department/simplelist"] == 1


def test_fake_rate_limit_maps_to_rate_limited(fake):
    client = make_client(fake)
    fake.set_rate_limit(per_minute=5, block_seconds=60)
    fake.rate_limits = True
    with override_settings(WECOM={"API_BASE": fake.api_base, "RATE_LIMIT_RETRY_AFTER": 90, **FAST}):
        with pytest.raises(WeComRateLimited) as info:
            for _ in range(10):
                client.department.simplelist()
    assert info.value.errcode in (45009, 45033)
    assert info.value.retry_after == 90


def test_wrong_secret_is_a_config_error(fake):
    client = WeComClient(fake.corp_id, "W" * 43, "contacts")
    with pytest.raises(WeComConfigError) as info:
        client.department.simplelist()
    exc = info.value
    assert exc.errcode == 40001
    assert exc.path == "gettoken"
    assert "contact Secret" in exc.admin_message
    assert_no_credentials(exc, "W" * 43)


def test_wrong_corp_id_is_a_config_error(fake):
    client = WeComClient("ww0000000000000000", fake.secret)
    with pytest.raises(WeComConfigError) as info:
        client.department.simplelist()
    assert info.value.errcode == 40013
    assert "CorpID" in info.value.admin_message
    assert_no_credentials(info.value, fake.secret)


def test_restricted_contact_api_is_a_config_error(fake):
    contacts = make_client(fake, "contacts")
    fake.restricted = True
    with pytest.raises(WeComConfigError) as info:
        contacts.department.list()
    assert info.value.errcode == 48009
    assert "department/list" in info.value.admin_message
    # The calls that still work for new apps keep working.
    assert contacts.department.simplelist()


def test_wrong_secret_kind_is_a_config_error(fake):
    contacts = make_client(fake, "contacts")
    with pytest.raises(WeComConfigError) as info:
        contacts.menu.get()
    assert info.value.errcode == 48002
    assert "menu/get" in info.value.admin_message
    # list_id is reserved for the contact secret; WeCom says so with the contact-assistant code.
    with pytest.raises(WeComConfigError) as info:
        make_client(fake, "app").user.list_id()
    assert info.value.errcode == 48009


@pytest.mark.parametrize("errcode", [60011, 60020])
def test_permission_errors_are_config_errors(fake, errcode):
    client = make_client(fake)
    fake.set_faults(error_rate=1.0, errcodes=(errcode,), paths=["department/simplelist"])
    with pytest.raises(WeComConfigError) as info:
        client.department.simplelist()
    assert info.value.errcode == errcode
    assert info.value.admin_message


def test_untrusted_ip_message_names_the_ip():
    exc = WeComConfigError(
        60020,
        "not allow to access from your ip, hint: [1700000000_1_abc], from ip: 203.0.113.9, more info at "
        "https://open.work.weixin.qq.com/devtool/query?e=60020",
        "message/send",
        "app",
    )
    assert exc.ip == "203.0.113.9"
    assert "203.0.113.9" in exc.admin_message


def test_timeout_is_a_network_error_without_credentials(fake):
    client = make_client(fake, "contacts")
    client.department.simplelist()
    token = client.access_token
    fake.reset_stats()
    fake.set_faults(latency=1.0, paths=["department/simplelist"])
    settings = {
        "API_BASE": fake.api_base,
        "HTTP_TIMEOUT": (1.0, 0.2),
        "BUSY_RETRIES": 1,
        "BUSY_BACKOFF": 0.001,
    }
    with override_settings(WECOM=settings):
        with pytest.raises(WeComNetworkError) as info:
            client.department.simplelist()
    exc = info.value
    assert exc.errcode is None
    assert "Timeout" in exc.errmsg
    assert fake.calls["department/simplelist"] == 2  # one retry, then give up
    assert exc.__cause__ is None and exc.__context__ is None
    assert_no_credentials(exc, token, fake.contact_secret)


def test_gettoken_network_error_hides_the_secret(fake):
    fake.set_faults(latency=1.0, paths=["gettoken"])
    settings = {"API_BASE": fake.api_base, "HTTP_TIMEOUT": (1.0, 0.2), "BUSY_RETRIES": 0}
    with override_settings(WECOM=settings):
        with pytest.raises(WeComNetworkError) as info:
            make_client(fake).department.simplelist()
    assert_no_credentials(info.value, fake.secret)


def test_connection_refused_is_a_network_error_without_credentials(fake):
    client = make_client(fake)
    client.department.simplelist()
    token = client.access_token
    fake.stop()
    with pytest.raises(WeComNetworkError) as info:
        client.department.simplelist()
    assert_no_credentials(info.value, token, fake.secret)


def test_message_send_is_not_resent_after_a_read_timeout(fake):
    client = make_client(fake)
    userid = next(iter(all_userids(make_client(fake, "contacts"))))
    client.department.simplelist()
    fake.reset_stats()
    fake.set_faults(latency=1.0, paths=["message/send"])
    settings = {"API_BASE": fake.api_base, "HTTP_TIMEOUT": (1.0, 0.2), "BUSY_RETRIES": 3}
    with override_settings(WECOM=settings):
        with pytest.raises(WeComNetworkError) as info:
            client.message.send_text("hello", touser=[userid])
    assert not info.value.retryable
    assert fake.calls["message/send"] == 1


def test_errmsg_echo_is_scrubbed():
    token = "T0K3N" * 10
    secret = "S3CR3T" * 7
    text = scrub(
        f"invalid credential, access_token={token}&corpsecret={secret} url: /cgi-bin/gettoken?corpid=ww1&corpsecret=x",
        token,
        secret,
    )
    assert token not in text and secret not in text and "corpsecret=x" not in text


def test_errors_survive_pickling_and_celery_reconstruction():
    errors = [
        WeComError(60111, "userid not found", "user/get", "contacts"),
        WeComRateLimited(45009, "api freq out of limit", "user/get", "contacts", retry_after=75),
        WeComConfigError(60020, "from ip: 1.2.3.4", "user/get", "app"),
        WeComNotConfigured("contacts", "secret"),
    ]
    for exc in errors:
        for copy in (pickle.loads(pickle.dumps(exc)), type(exc)(*exc.args)):
            assert type(copy) is type(exc)
            assert (copy.errcode, copy.errmsg, copy.path, copy.kind) == (
                exc.errcode,
                exc.errmsg,
                exc.path,
                exc.kind,
            )
    assert pickle.loads(pickle.dumps(errors[1])).retry_after == 75


# Rate budget ------------------------------------------------------------------------------------


def _start_of_window(window):
    """Sleep to just after a window boundary so a short burst stays inside one window."""
    time.sleep(math.ceil(time.time() / window) * window - time.time() + 0.01)


def test_rate_budget_raises_when_it_cannot_wait(fake):
    budget = RateBudget(fake.corp_id, window=3600, per_window=20, max_wait=0)
    client = make_client(fake, rate_budget=budget)
    for _ in range(20):
        client.department.simplelist()
    fake.reset_stats()
    with pytest.raises(WeComRateLimited) as info:
        client.department.simplelist()
    assert info.value.errcode is None
    assert info.value.retry_after >= 1
    assert fake.calls["department/simplelist"] == 0


def test_rate_budget_waits_for_the_next_window(fake):
    window = 2.0
    budget = RateBudget(fake.corp_id, window=window, per_window=20, max_wait=5)
    client = make_client(fake, rate_budget=budget)
    assert client.access_token  # the token fetch is not charged, but keep it out of the burst anyway
    _start_of_window(window)
    for _ in range(20):
        client.department.simplelist()
    assert stats.rate_budget_waits == 0
    client.department.simplelist()
    assert stats.rate_budget_waits == 1
    assert fake.calls["department/simplelist"] == 21


def test_rate_budget_is_shared_by_all_secrets_of_a_corp(fake):
    app = make_client(fake, rate_budget=RateBudget(fake.corp_id, window=3600, per_window=10, max_wait=0))
    contacts = make_client(
        fake, "contacts", rate_budget=RateBudget(fake.corp_id, window=3600, per_window=10, max_wait=0)
    )
    for _ in range(5):
        app.department.simplelist()
        contacts.department.simplelist()
    with pytest.raises(WeComRateLimited):
        contacts.department.simplelist()


def test_rate_budget_reads_settings(fake):
    settings = {"API_BASE": fake.api_base, "RATE_BUDGET_PER_MINUTE": 3, "RATE_BUDGET_MAX_WAIT": 0}
    with override_settings(WECOM=settings):
        client = make_client(fake, rate_budget=RateBudget(fake.corp_id, window=3600))
        for _ in range(3):
            client.department.simplelist()
        with pytest.raises(WeComRateLimited):
            client.department.simplelist()


# API groups -------------------------------------------------------------------------------------


def test_list_id_iterates_every_member_once(fake):
    contacts = make_client(fake, "contacts")
    expected = all_userids(contacts)
    # One row per (member, department): a member of two departments appears twice, never a row twice.
    rows = [(entry["userid"], entry["department"]) for entry in contacts.user.iter_list_id(limit=7)]
    assert len(rows) == len(set(rows))
    assert {userid for userid, _ in rows} == expected
    assert len(rows) > len(expected)  # the seeded org has members in several departments
    assert fake.calls["user/list_id"] >= math.ceil(len(rows) / 7)


def test_user_group(fake):
    contacts = make_client(fake, "contacts")
    department = contacts.department.simplelist()[0]["id"]
    members = contacts.user.simplelist(department)
    full = contacts.user.list(department)
    assert {m["userid"] for m in members} == {m["userid"] for m in full}
    user = contacts.user.get(members[0]["userid"])
    assert user["userid"] == members[0]["userid"] and "name" in user
    fake.issue_tfa_code(members[0]["userid"])  # authsucc only for a member sent to the verification page
    assert contacts.user.authsucc(members[0]["userid"])["errcode"] == 0
    other = next(u for u in fake.org.users if u != members[0]["userid"])
    info = contacts.oauth.get_tfa_info(fake.issue_tfa_code(other))
    assert info["userid"] == other
    assert contacts.user.tfa_succ(info["userid"], info["tfa_code"])["errcode"] == 0
    with pytest.raises(WeComError):
        contacts.user.get("nobody-with-this-id")
    with pytest.raises(ValueError):
        contacts.user.list_id(limit=10001)


def test_department_list_has_names(fake):
    departments = make_client(fake, "contacts").department.list()
    assert any(d["id"] == 1 for d in departments)
    assert all("name" in d for d in departments)


def test_external_contacts_batch_pages(fake):
    contacts = make_client(fake, "contacts")
    customers = make_client(fake, "customers")
    userids = sorted(all_userids(contacts))
    expected = set()
    for userid in userids:
        for external_userid in customers.externalcontact.list(userid):
            expected.add((userid, external_userid))
    assert expected, "the fake should give some members customers"
    fake.reset_stats()
    got = [
        (item["follow_info"]["userid"], item["external_contact"]["external_userid"])
        for item in customers.externalcontact.iter_batch_get_by_user(userids, limit=3)
    ]
    assert len(got) == len(set(got))
    assert set(got) == expected
    assert fake.calls["externalcontact/batch/get_by_user"] > 1
    one = next(iter(expected))[1]
    assert customers.externalcontact.get(one)["external_contact"]["external_userid"] == one
    with pytest.raises(ValueError):
        customers.externalcontact.batch_get_by_user(userids * 2)


def test_menu_create_get_delete(fake):
    client = make_client(fake)
    menu = {"button": [{"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"}]}
    client.menu.create(fake.agent_id, menu)
    assert client.menu.get(fake.agent_id)["button"] == menu["button"]
    assert fake.menus[fake.agent_id]["button"] == menu["button"]
    client.menu.delete(fake.agent_id)
    with pytest.raises(WeComError) as info:
        client.menu.get(fake.agent_id)
    assert info.value.errcode == 46003  # menu no exist


def test_media_upload_bytes_and_file(fake):
    client = make_client(fake)
    first = client.media.upload("file", "report.txt", b"quarterly numbers")
    second = client.media.upload("image", "logo.png", io.BytesIO(b"\x89PNG fake image"))
    assert first["media_id"] and second["media_id"] and first["media_id"] != second["media_id"]
    assert fake.media[first["media_id"]]["size"] == len(b"quarterly numbers")
    assert fake.media[second["media_id"]]["filename"] == "logo.png"
    assert second["type"] == "image"
    with pytest.raises(ValueError):
        client.media.upload("document", "x.txt", b"x")


def test_message_helpers(fake):
    client = make_client(fake)
    userids = sorted(all_userids(make_client(fake, "contacts")))[:2]
    answer = client.message.send_text("你好", touser=userids)
    assert answer["errcode"] == 0
    payload = fake.sent_messages[-1]
    assert payload["touser"] == "|".join(userids)
    assert payload["text"]["content"] == "你好"
    assert payload["agentid"] == fake.agent_id
    media_id = client.media.upload("file", "a.txt", b"hello world")["media_id"]
    for answer in (
        client.message.send_markdown("**bold**", touser=userids),
        client.message.send_textcard("Title", "Body", "https://example.com", btntxt="Open", touser=userids),
        client.message.send_news([{"title": "T", "url": "https://example.com"}], touser=userids),
        client.message.send_image(media_id, touser=userids),
        client.message.send_file(media_id, touser=userids, enable_duplicate_check=1),
        client.message.send_text("all", toparty=[1]),
    ):
        assert answer["errcode"] == 0
    partly = client.message.send_text("x", touser=[userids[0], "no-such-user"])
    assert partly["invaliduser"] == "no-such-user"
    assert {d["userid"] for d in fake.deliveries if d["msgid"] == partly["msgid"]} == {userids[0]}
    with pytest.raises(WeComError) as info:
        client.message.send_text("x", touser=["no-such-user"])
    assert info.value.errcode == 81013
    with pytest.raises(ValueError):
        client.message.send_text("x")
    with pytest.raises(ValueError):
        client.message.send_text("x", touser=[str(i) for i in range(1001)])


def test_oauth_code_exchange(fake):
    client = make_client(fake)
    userid = sorted(all_userids(make_client(fake, "contacts")))[0]
    code = fake.issue_oauth_code(userid)
    assert client.oauth.getuserinfo(code)["userid"] == userid
    with pytest.raises(WeComError) as info:
        client.oauth.getuserinfo(code)  # single use
    assert info.value.errcode == 40029


def test_oauth_urls_have_the_documented_format():
    assert authorize_url(
        "ww21c67da6767865c2", "https://jit-dev.wanyunapp.com/whwy/yiguixue", "xyz", 1000073
    ) == (
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=ww21c67da6767865c2"
        "&redirect_uri=https%3A%2F%2Fjit-dev.wanyunapp.com%2Fwhwy%2Fyiguixue&response_type=code"
        "&scope=snsapi_base&state=xyz&agentid=1000073#wechat_redirect"
    )
    assert qr_login_url("ww1", "https://erp.example.com/wecom/login/?next=/a b", "s t", "1000002") == (
        "https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp&appid=ww1&agentid=1000002"
        "&redirect_uri=https%3A%2F%2Ferp.example.com%2Fwecom%2Flogin%2F%3Fnext%3D%2Fa%20b&state=s%20t"
    )
    client = WeComClient("ww1", "x" * 43, agent_id=1000002)
    assert client.oauth.authorize_url("https://a.example/cb", "st") == authorize_url(
        "ww1", "https://a.example/cb", "st", 1000002
    )
    assert "agentid=7" in client.oauth.qr_login_url("https://a.example/cb", "st", agent_id=7)


# Factory, diagnostics, session ------------------------------------------------------------------


def test_client_for_picks_the_secret_of_each_kind(fake):
    config = config_for(fake)
    assert client_for(config, "contacts").department.simplelist()
    assert fake.gettoken_calls["contacts"] == 1
    assert client_for(config_for(fake, customer_secret=""), "customers").access_token
    # Newer corps: the customer client falls back to the app secret.
    assert fake.gettoken_calls["app"] == 1
    with pytest.raises(WeComNotConfigured) as info:
        client_for(config_for(fake, contact_secret=""), "contacts")
    assert "contact Secret" in info.value.admin_message
    with pytest.raises(WeComNotConfigured):
        client_for(config_for(fake, corp_id=""), "app")
    assert fake.secret not in repr(client_for(config, "app"))


def test_test_connection_reports_each_secret(fake):
    fake.customer_app_authorised = True
    checks = test_connection(config_for(fake, customer_secret=""))
    assert [(c.kind, c.ok) for c in checks] == [
        ("app", True),
        ("contacts", True),
        ("customers", True),
        ("egress", True),
    ]
    assert "app Secret" in checks[2].message
    assert "WeCom sees 127.0.0.1: calls go out directly" in checks[3].message

    checks = test_connection(config_for(fake, contact_secret="B" * 43, secret=""))
    by_kind = {c.kind: c for c in checks}
    assert not by_kind["app"].ok and by_kind["app"].message  # not configured
    assert not by_kind["contacts"].ok and "contact Secret" in by_kind["contacts"].message
    assert by_kind["customers"].ok
    assert all("B" * 43 not in c.message for c in checks)

    checks = test_connection(config_for(fake, corp_id="ww0000000000000000"))
    # Every secret fails on the CorpID; WeCom's answer still names the IP it saw (the egress line).
    assert all(not c.ok and "CorpID" in c.message for c in checks if c.kind != "egress")


def test_connection_probes_customer_access_in_an_old_and_a_new_corp(fake):
    """Docs 92994, 96316: the probe is externalcontact/get_follow_user_list with the configured credential,
    and a refusal names the setting to change."""
    old_corp = config_for(fake, customer_credential="secret")
    assert test_connection(old_corp)[2].ok
    fake.customer_contact = "app"  # a corp set up since 2023-12-01: the 客户联系 secret is refused
    check = test_connection(old_corp)[2]
    assert not check.ok and "可调用接口的应用" in check.message and "customers are read with" in check.message
    new_corp = config_for(fake, customer_credential="app", customer_secret="")
    check = test_connection(new_corp)[2]
    assert not check.ok and "可调用接口的应用" in check.message  # the app is not authorised yet
    fake.customer_app_authorised = True
    check = test_connection(new_corp)[2]
    assert check.ok and "app Secret" in check.message
    assert client_for(new_corp, "customers").externalcontact.get_follow_user_list()


def test_session_is_per_process():
    parent = session_module.get_session()
    assert session_module.get_session() is parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            child = session_module.get_session()
            os.write(write, b"1" if child is not parent and child is session_module.get_session() else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
