"""Metrics, structured logs and the request id: what an operator sees, and that no secret is in it."""

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import RequestFactory
from prometheus_client import REGISTRY

from config.celery import app as celery_app
from tests.operations.test_scale_out import ROOT, Proc, base_env, free_port, wait_for, wait_http_ok
from wecom_integration import observability
from wecom_integration.operations.middleware import RequestIdMiddleware


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


# Request ids --------------------------------------------------------------------------------------------


def _run_middleware(**headers):
    seen = {}

    def view(request):
        from django.http import HttpResponse

        seen["context"] = observability.get_request_id()
        seen["request"] = request.request_id
        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/anything", headers=headers))
    return response, seen


def test_middleware_keeps_a_valid_incoming_request_id():
    response, seen = _run_middleware(**{"X-Request-Id": "lb-7f3a.01"})
    assert response["X-Request-Id"] == "lb-7f3a.01"
    assert seen == {"context": "lb-7f3a.01", "request": "lb-7f3a.01"}
    assert observability.get_request_id() is None, "the id must not outlive its request"


@pytest.mark.parametrize("incoming", ["", "two words", "a" * 65, "id\nX-Injected: 1", "<script>"])
def test_middleware_replaces_an_unusable_request_id(incoming):
    response, seen = _run_middleware(**{"X-Request-Id": incoming})
    assert response["X-Request-Id"] != incoming
    assert len(response["X-Request-Id"]) == 32
    assert seen["context"] == response["X-Request-Id"]


def test_middleware_makes_a_new_id_per_request():
    ids = {_run_middleware()[0]["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.django_db
def test_every_response_carries_a_request_id(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="probe-1")["X-Request-Id"] == "probe-1"
    assert len(client.get("/healthz")["X-Request-Id"]) == 32


ECHO_SEEN = []


# Bound to the project's app, not shared_task: another test's Celery app made current must not take it over.
# Named as one of the app's tasks: the app's receivers act on its own tasks only.
@celery_app.task(name="wecom_integration.tests.echo_request_id")
def echo_request_id():
    ECHO_SEEN.append(observability.get_request_id())
    return observability.get_request_id()


# A task of the host project: the app's receivers leave it alone.
@celery_app.task(name="hostproj.tasks.echo_request_id")
def host_echo_request_id():
    ECHO_SEEN.append(observability.get_request_id())
    return observability.get_request_id()


def test_the_hosts_own_tasks_are_left_alone():
    ECHO_SEEN.clear()
    before = sample("wecom_tasks_total", task="hostproj.tasks.echo_request_id", state="success")
    with observability.request_id_context("outer-2"):
        host_echo_request_id.delay()
    host_echo_request_id.delay()
    # An eager task runs in the caller's context: the caller's id is seen, no task id is made current.
    assert ECHO_SEEN == ["outer-2", None]
    assert sample("wecom_tasks_total", task="hostproj.tasks.echo_request_id", state="success") == before


def test_an_eager_task_runs_under_its_callers_request_id_and_gives_it_back():
    ECHO_SEEN.clear()
    with observability.request_id_context("outer-1"):
        echo_request_id.delay()
        assert observability.get_request_id() == "outer-1"
    echo_request_id.delay()
    assert ECHO_SEEN[0] == "outer-1"
    # Outside a request the task's own id stands in, and nothing is left behind afterwards.
    assert ECHO_SEEN[1] and ECHO_SEEN[1] != "outer-1"
    assert observability.get_request_id() is None


def test_the_request_id_travels_in_the_message_to_a_worker():
    """A real worker consuming a real broker (memory, or Redis in CI): the id crosses the wire."""
    from celery.contrib.testing.worker import start_worker

    app = celery_app
    ECHO_SEEN.clear()
    queue = f"obs-test-{uuid.uuid4().hex[:8]}"
    before = sample("wecom_tasks_total", task="wecom_integration.tests.echo_request_id", state="success")
    app.conf.task_always_eager = False
    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=30):
        with observability.request_id_context("from-the-web-7"):
            echo_request_id.apply_async(queue=queue)
        assert observability.get_request_id() is None
        wait_for(lambda: ECHO_SEEN, timeout=30, what="the worker to run the task")
    assert ECHO_SEEN == ["from-the-web-7"]
    assert sample("wecom_tasks_total", task="wecom_integration.tests.echo_request_id", state="success") == before + 1


# Logs ----------------------------------------------------------------------------------------------------


@pytest.fixture
def json_log():
    """A logger writing through the production formatter and filter into a buffer; returns (logger, read)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.JsonFormatter())
    handler.addFilter(observability.RequestIdFilter())
    handler.addFilter(observability.SecretScrubFilter())
    logger = logging.getLogger(f"tests.obs.{uuid.uuid4().hex[:6]}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_log_event_writes_one_json_object_with_the_request_id(json_log):
    logger, read = json_log
    with observability.request_id_context("req-42"):
        observability.log_event(logger, "callback.handled", tenant=3, kind="contacts", outcome="ok", duration_ms=12.5)
    (line,) = read()
    assert line["event"] == "callback.handled"
    assert line["request_id"] == "req-42"
    assert (line["tenant"], line["kind"], line["outcome"], line["duration_ms"]) == (3, "contacts", "ok", 12.5)
    assert line["level"] == "INFO"
    assert datetime.fromisoformat(line["ts"]).tzinfo is not None


def test_log_event_never_writes_a_secret(json_log):
    logger, read = json_log
    observability.log_event(
        logger, "wecom.call",
        corpsecret="S3cret-Value-1", contact_secret="S3cret-Value-2", access_token="T0ken-Value-3",
        url="https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=S3cret-Value-4",
        answer='{"errcode": 0, "access_token": "T0ken-Value-5", "expires_in": 7200}',
        header="Authorization: Bearer T0ken-Value-6-long-enough",
    )
    text = json.dumps(read())
    for n in range(1, 7):
        assert f"-Value-{n}" not in text
    (line,) = read()
    assert line["corpsecret"] == "***"
    assert "corpid=ww1" in line["url"], "only the secret is masked"


def test_the_filter_scrubs_any_logger_and_tracebacks(json_log):
    logger, read = json_log
    logger.warning("fetching %s", "https://x/cgi-bin/user/get?access_token=T0ken-Value-7&userid=zhangsan")
    try:
        raise ValueError("gettoken failed for corpsecret=S3cret-Value-8")
    except ValueError:
        logger.exception("boom")
    first, second = read()
    assert "T0ken-Value-7" not in first["message"]
    assert "userid=zhangsan" in first["message"]
    assert "S3cret-Value-8" not in second["exc"]
    assert "ValueError" in second["exc"]


def test_the_filter_also_protects_plain_text_logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s [%(request_id)s] %(message)s"))
    handler.addFilter(observability.RequestIdFilter())
    handler.addFilter(observability.SecretScrubFilter())
    logger = logging.getLogger("tests.obs.plain")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("config %s", {"contact_secret": "S3cret-Value-9"})
        observability.log_event(logger, "sync.phase", tenant=1, phase="members", count=120)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "S3cret-Value-9" not in text
    assert "ERROR [-] config" in text
    assert "sync.phase tenant=1 phase=members count=120" in text


def test_django_request_lines_carry_the_request_id_of_their_request(json_log):
    logger, read = json_log
    request = RequestFactory().get("/readyz")
    request.request_id = "late-line-1"
    logger.error("Service Unavailable: /readyz", extra={"request": request, "status_code": 503})
    assert read()[0]["request_id"] == "late-line-1"


def test_timed_event_logs_duration_outcome_and_what_the_block_found(json_log):
    logger, read = json_log
    with observability.timed_event(logger, "sync.phase", tenant=2, phase="departments") as found:
        found["count"] = 7
    with pytest.raises(KeyError), observability.timed_event(logger, "sync.phase", tenant=2, phase="members"):
        raise KeyError("x")
    ok, failed = read()
    assert (ok["outcome"], ok["count"], ok["phase"]) == ("ok", 7, "departments")
    assert ok["duration_ms"] >= 0
    assert (failed["outcome"], failed["level"]) == ("KeyError", "WARNING")


# Metrics -------------------------------------------------------------------------------------------------


def test_record_functions_count_by_their_labels():
    before = {
        "accepted": sample("wecom_callbacks_received_total", kind="contacts", outcome="accepted"),
        "duplicate": sample("wecom_callbacks_received_total", kind="contacts", outcome="duplicate"),
        "refused": sample("wecom_callbacks_received_total", kind="app", outcome="refused"),
        "signature": sample("wecom_callbacks_refused_total", kind="app", reason="signature"),
        "failed": sample("wecom_callbacks_failed_total", kind="customers"),
        "sync": sample("wecom_sync_runs_total", kind="contacts", outcome="succeeded"),
        "sent": sample("wecom_messages_sent_total", msgtype="text", outcome="partial"),
    }
    observability.record_callback_received("contacts")
    observability.record_callback_received("contacts", duplicate=True)
    observability.record_callback_refused("app", "signature")
    observability.record_callback_failed("customers")
    observability.record_sync_run("contacts", "succeeded", 42.0)
    observability.record_message_sent("text", "partial")
    after = {
        "accepted": sample("wecom_callbacks_received_total", kind="contacts", outcome="accepted"),
        "duplicate": sample("wecom_callbacks_received_total", kind="contacts", outcome="duplicate"),
        "refused": sample("wecom_callbacks_received_total", kind="app", outcome="refused"),
        "signature": sample("wecom_callbacks_refused_total", kind="app", reason="signature"),
        "failed": sample("wecom_callbacks_failed_total", kind="customers"),
        "sync": sample("wecom_sync_runs_total", kind="contacts", outcome="succeeded"),
        "sent": sample("wecom_messages_sent_total", msgtype="text", outcome="partial"),
    }
    assert {key: after[key] - before[key] for key in before} == dict.fromkeys(before, 1.0)


def test_handling_lag_is_measured_from_receipt():
    def lag(suffix, **labels):
        return sample(f"wecom_callback_handling_lag_seconds_{suffix}", kind="app", **labels)

    before = lag("count"), lag("sum"), lag("bucket", le="10.0"), lag("bucket", le="60.0")
    observability.record_callback_handled("app", received_at=datetime.now(UTC) - timedelta(seconds=30))
    assert lag("count") == before[0] + 1
    assert lag("sum") - before[1] >= 30
    # Received 30 s ago: above the 10 s bucket, inside the 60 s one.
    assert lag("bucket", le="10.0") == before[2]
    assert lag("bucket", le="60.0") == before[3] + 1


def test_the_client_listener_is_installed_at_start_up():
    from wecom_integration.client import listeners

    assert observability.on_client_event in listeners


def test_wecom_calls_feed_metrics_and_one_log_line_each(fake_wecom, caplog):
    from wecom_integration.client import BaseWeComClient

    path = "department/simplelist"
    calls = sample("wecom_api_calls_total", path=path, errcode="0")
    tokens = sample("wecom_token_fetches_total", kind="contacts")
    client = BaseWeComClient(fake_wecom.corp_id, fake_wecom.contact_secret, kind="contacts",
                             api_base=fake_wecom.api_base)
    with caplog.at_level(logging.INFO, logger="wecom_integration.api"):
        client.get(path)
        client.get(path)
    assert sample("wecom_api_calls_total", path=path, errcode="0") == calls + 2
    assert sample("wecom_token_fetches_total", kind="contacts") == tokens + 1
    lines = [r for r in caplog.records if getattr(r, "wecom_event", None) == "wecom.call"]
    assert [r.wecom_fields["path"] for r in lines] == ["gettoken", path, path]
    assert all(r.wecom_fields["outcome"] == "ok" and r.wecom_fields["kind"] == "contacts" for r in lines)
    assert client.access_token not in caplog.text
    assert fake_wecom.contact_secret not in caplog.text


def test_a_refused_call_is_counted_by_its_errcode(fake_wecom):
    from wecom_integration.client import BaseWeComClient, WeComConfigError

    before = sample("wecom_api_calls_total", path="gettoken", errcode="40001")
    client = BaseWeComClient(fake_wecom.corp_id, "wrong-secret-0123456789", kind="app", api_base=fake_wecom.api_base)
    with pytest.raises(WeComConfigError):
        client.get("agent/get", params={"agentid": fake_wecom.agent_id})
    assert sample("wecom_api_calls_total", path="gettoken", errcode="40001") == before + 1


def _in_subprocess(code, env):
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_multiprocess_mode_sums_every_process_and_forgets_dead_ones_on_prune(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    # The app reads the directory from its settings (config/ takes it from PROMETHEUS_MULTIPROC_DIR).
    env = base_env(PROMETHEUS_MULTIPROC_DIR=tmp_path, DJANGO_SETTINGS_MODULE="config.settings")
    count = "from wecom_integration import observability as o; o.record_callback_received('contacts')"
    _in_subprocess(count, env)
    _in_subprocess(count + "; o.record_callback_received('contacts')", env)
    show = ("from prometheus_client import generate_latest; from wecom_integration import observability as o; "
            "print(generate_latest(o.metrics_registry()).decode())")

    def accepted(text):
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "wecom_callbacks_received_total" and s.labels.get("outcome") == "accepted")

    assert accepted(_in_subprocess(show, env)) == 3
    live = tmp_path / f"counter_{os.getpid()}.db"
    live.write_bytes(b"")
    # Those processes have exited: a new process tree starting here drops their files, not a live one's.
    assert observability.prune_multiprocess_dir(str(tmp_path)) >= 2
    assert live.exists()
    live.unlink()
    assert accepted(_in_subprocess(show, env)) == 0


def test_gunicorn_with_several_workers_exposes_their_sum(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999999.db"
    stale.write_bytes(b"left by a previous run")
    port = free_port()
    env = base_env(PORT=port, HOST="127.0.0.1", WEB_CONCURRENCY=2, PROMETHEUS_MULTIPROC_DIR=metrics_dir,
                   REDIS_URL=None, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    web = Proc("web-2-workers", "gunicorn -c gunicorn.conf.py config.wsgi", env, tmp_path)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", procs=[web])
        assert not stale.exists(), "a previous run's counts must not add up with this run's"
        # Each worker writes its own file once the app is loaded in it.
        wait_for(lambda: len(list(metrics_dir.glob("counter_*.db"))) == 2, timeout=30, what="two workers' files",
                 procs=[web])
        scraped = wait_http_ok(f"http://127.0.0.1:{port}/metrics", procs=[web])
        assert "wecom_rate_budget_waits_total 0.0" in scraped.text
        # Per-process collectors (gc, process) are absent: the answer is the workers' merged files.
        assert "python_gc_objects_collected_total" not in scraped.text
    finally:
        web.stop()


def test_gunicorn_makes_a_private_metrics_directory_for_several_workers(tmp_path):
    port = free_port()
    env = base_env(PORT=port, HOST="127.0.0.1", WEB_CONCURRENCY=2, REDIS_URL=None,
                   DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", TMPDIR=tmp_path)
    web = Proc("web-own-dir", "gunicorn -c gunicorn.conf.py config.wsgi", env, tmp_path)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", procs=[web])
        made = wait_for(lambda: list(tmp_path.glob("wecom-metrics-*")), timeout=30, what="the metrics directory",
                        procs=[web])
        scraped = wait_http_ok(f"http://127.0.0.1:{port}/metrics", procs=[web])
        assert "python_gc_objects_collected_total" not in scraped.text
    finally:
        web.stop()
    assert web.popen.returncode == 0, web.tail()
    assert not made[0].exists(), "the directory gunicorn made is removed when it exits"


def test_metric_labels_stay_bounded():
    observability.record_callback_refused("contacts", "x" * 500)
    assert sample("wecom_callbacks_refused_total", kind="contacts", reason="x" * 64) >= 1
    assert sample("wecom_callbacks_refused_total", kind="contacts", reason="x" * 500) == 0


def _scrub_by_the_patterns_alone(text):
    text = observability._SECRET_PAIR.sub(r"\1***", str(text))
    return observability._BEARER.sub(r"\1\2***", text)


@pytest.mark.parametrize(
    "text",
    [
        "callback.received tenant=1 kind=contacts outcome=accepted",
        "access_token=T0ken-Value-1&userid=zhangsan",
        "ACCESS_TOKEN: T0ken-Value-2",
        '{"CorpSecret": "S3cret-Value-3"}',
        "encodingAesKey=jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "Authorization: BEARER abcdefghijklmnopqrstuvwxyz",
        "passwd=hunter2-Value-4 and password: hunter2-Value-5",
        # re's IGNORECASE matches these non-ASCII letters to ASCII ones: long s, Kelvin sign, dotted and dotless i.
        "ſecret=S3cret-Value-6",
        "access_to\u212aen=T0ken-Value-7",
        "ENCOD\u0130NG_AES_KEY=Key-Value-8",
        "encod\u0131ng_aes_key=Key-Value-9",
        "部门 名称=研发中心 token=T0ken-Value-10",
        "张三 passwd=中文密码-Value-11",
        "张三 李四 no credential here, only 中文",
        "tokens are words: a token and a secret handshake",
        "",
    ],
)
def test_scrub_text_masks_exactly_what_its_patterns_mask(text):
    assert observability.scrub_text(text) == _scrub_by_the_patterns_alone(text)


def test_the_words_that_let_a_text_skip_the_patterns_are_complete():
    """Every non-ASCII character that IGNORECASE matches to a letter of the words is folded before looking."""
    import re
    import sys

    letters = set("tokensecretaespasswbearer")
    folded = {
        cp for cp in range(128, sys.maxunicode + 1) for letter in letters if re.fullmatch(f"(?i){letter}", chr(cp))
    }
    assert folded == set(observability._FOLD_TO_ASCII)
    for cp in folded:
        assert chr(cp).translate(observability._FOLD_TO_ASCII).lower() in letters


@pytest.mark.parametrize("value", [0, -7, 10**30, True, False, None, 1.5, "a b", "中文", "x", ["a"], {"k": 1}])
def test_plain_values_read_as_json_reads_them(value):
    expected = value if isinstance(value, str) and value and " " not in value else json.dumps(value, ensure_ascii=False)
    assert observability._plain(value) == expected
