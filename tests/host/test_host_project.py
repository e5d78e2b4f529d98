"""The app as a host developer adopts it: built into a wheel, installed (not this source tree) into a fresh
virtualenv, added to a project made by ``django-admin startproject`` with a custom user model, DRF's default
settings, ``LOGGING = {}``, its own Celery app and nothing WeCom-specific beyond INSTALLED_APPS, the
sign-in backend and the URL includes (docs/install.md). The fake WeCom, started here, stands in for
qyapi.weixin.qq.com.

Everything runs in the host's own processes (``manage.py``, ``runserver``, ``celery -A hostproj worker``);
this process only drives them and plays WeCom. The wheel, the virtualenv and the project are made once for
the module (pip's cache keeps the install short).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import requests

from tests.factories import aes_key
from tests.operations.test_scale_out import _die_with_the_tests, free_port, wait_for
from wecom_integration.testing import FakeWeCom

ROOT = Path(__file__).resolve().parents[2]
# Not copied into the build: what is not the package's source (and may be large). Top level only: the
# apps' own static/ and locale/ must stay.
TOP_LEVEL_IGNORED = {".git", ".venv", "venv", "db", "build", "dist", "static", "docs", "bench", "tests", "node_modules"}
SUPERUSER = "admin"
# Callback kind -> the prefix of its Token and EncodingAESKey options.
OPTION_PREFIX = {"app": "app", "contacts": "contact", "customers": "customer"}
TIMEOUT = 600


# The host's files ---------------------------------------------------------------------------------------

HOST_SETTINGS = """

# --- What the host adds to adopt django-wecom-integration (docs/install.md) ---
INSTALLED_APPS += [
    "rest_framework",
    "rest_framework.authtoken",
    "tenants",
    "wecom_integration",
    "accounts",
]
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "wecom_integration.login.backends.WeComBackend",
]
# The host's own choices: no logging set-up at all, tasks run in the web process unless a worker runs.
LOGGING = {}
CELERY_TASK_ALWAYS_EAGER = True
# Only for this test: the fake WeCom stands in for qyapi.weixin.qq.com.
WECOM = {"API_BASE": %(api_base)r}
"""

HOST_URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("wecom_integration.operations.urls")),
    path("admin/", admin.site.urls),
    path("", include("wecom_integration.urls")),
]
"""

HOST_CELERY = """
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostproj.settings")

app = Celery("hostproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

USER_MODEL = """
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    nickname = models.CharField(max_length=50, blank=True)
"""

USER_ADMIN = """
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User

admin.site.register(User, UserAdmin)
"""

# Settings variants the system checks must catch.
NO_BACKEND = """
from .settings import *  # noqa: F403

AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
"""
NO_BROKER = """
from .settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = False
"""

# Every admin page of both apps, rendered by the host as a superuser: url -> status.
RENDER_ADMIN = """
import json
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.urls import URLPattern, reverse
from wecom_integration.models import InboxMessage, WeComConfig

superuser = get_user_model().objects.get(username=%(superuser)r)
# startproject: DEBUG on, ALLOWED_HOSTS empty (localhost only). A page that fails counts as its 500.
client = Client(HTTP_HOST="localhost", raise_request_exception=False)
client.force_login(superuser)
request = RequestFactory().get("/admin/")
request.user = superuser
message = InboxMessage.objects.first()
config = WeComConfig.objects.first()
pages, skipped = {}, []
for model, model_admin in admin.site._registry.items():
    if model._meta.app_label not in ("tenants", "wecom_integration"):
        continue
    first = model._default_manager.order_by("pk").first()
    for pattern in model_admin.urls:
        if not isinstance(pattern, URLPattern) or not pattern.name:
            continue
        values = {
            "object_id": first.pk if first else None,
            "config_id": config.pk if config else None,
            "tenant_id": message.tenant_id if message else None,
            "wecom_userid": message.wecom_userid if message else None,
        }
        names = list(getattr(pattern.pattern, "converters", {}))
        # Pages the admin does not offer (the mirrors of WeCom's data are read-only) are not pages.
        offered = {
            "add": model_admin.has_add_permission(request),
            "delete": model_admin.has_delete_permission(request, first),
        }.get(pattern.name.rsplit("_", 1)[-1], True)
        if not offered or any(values.get(name) is None for name in names):
            skipped.append(pattern.name)
            continue
        url = reverse("admin:" + pattern.name, kwargs={name: values[name] for name in names})
        # A page may send on to another (a sync run's page to its progress): where it lands must render.
        pages[url] = client.get(url, follow=True).status_code
index = client.get(reverse("admin:index"))
print(json.dumps({
    "pages": pages,
    "skipped": skipped,
    "index": index.status_code,
    "index_html": index.content.decode(),
    "site_header": str(admin.site.site_header),
    "site_title": str(admin.site.site_title),
}))
"""


# The second host (issue 24, "Your own organisations" in docs/install.md): its own organisation model and
# its own membership rule, WECOM_TENANT_MODEL set, the tenants app not installed.
ORG_SETTINGS = """

# --- What the host adds to adopt django-wecom-integration with its own organisations ---
INSTALLED_APPS += [
    "rest_framework",
    "rest_framework.authtoken",
    "orgs",
    "wecom_integration",
]
WECOM_TENANT_MODEL = "orgs.Organization"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "wecom_integration.login.backends.WeComBackend",
]
CELERY_TASK_ALWAYS_EAGER = True
WECOM = {"API_BASE": %(api_base)r, "ADAPTER": "orgs.wecom.OrgAdapter"}
"""

ORG_MODELS = """
from django.conf import settings
from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self):
        return self.name


class Seat(models.Model):
    \"\"\"The host's membership: a seat in an organisation; an owner administers it.\"\"\"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE)
    owner = models.BooleanField(default=False)
    approved = models.BooleanField(default=True)
"""

# The host's rule, through the app's adapter (docs/install.md, "Your own organisations").
ORG_ADAPTER = """
from wecom_integration import tenancy
from wecom_integration.login.adapter import DefaultWeComAdapter

from .models import Seat


class OrgAdapter(DefaultWeComAdapter):
    def admin_tenant_ids(self, user):
        return set(Seat.objects.filter(user=user, owner=True).values_list("organization_id", flat=True))

    def member_user_ids(self, tenant, statuses=(tenancy.ACTIVE,)):
        approved = [s == tenancy.ACTIVE for s in statuses]
        return Seat.objects.filter(organization=tenant, approved__in=approved).values("user_id")

    def membership_statuses(self, tenant, user_ids):
        seats = Seat.objects.filter(organization=tenant, user_id__in=list(user_ids))
        return {uid: tenancy.ACTIVE if ok else tenancy.PENDING for uid, ok in seats.values_list("user_id", "approved")}

    def set_memberships(self, tenant, statuses):
        seats = Seat.objects.filter(organization=tenant, user_id__in=list(statuses))
        have = set(seats.values_list("user_id", flat=True))
        Seat.objects.bulk_create(
            Seat(organization=tenant, user_id=uid, approved=status == tenancy.ACTIVE)
            for uid, status in statuses.items() if uid not in have
        )
        return len(statuses) - len(have)
"""


class HostProc:
    """A process of the host (runserver, a Celery worker) run from the host's directory, output to a log."""

    def __init__(self, name, args, *, cwd, env, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_the_tests,
        )

    def running(self):
        return self.popen.poll() is None

    def tail(self, lines=60):
        text = self.log_path.read_text(errors="replace")
        return f"--- {self.name}\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout=30):
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


class Host:
    """The generated host project in its own virtualenv (a second host shares the virtualenv)."""

    def __init__(self, base, fake, site="hostsite"):
        self.base = Path(base)
        self.venv = self.base / "venv"
        self.dir = self.base / site
        self.python = self.venv / "bin" / "python"
        self.fake = fake
        self.procs = []

    def env(self, **extra):
        # Nothing of this repository's project may leak in: no settings module, no path, no services.
        env = {
            name: value for name, value in os.environ.items()
            if not name.startswith(("DJANGO_", "WECOM_", "CELERY_", "PYTHON"))
            and name not in ("DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env.update({name: str(value) for name, value in extra.items()})
        return env

    def run(self, *args, input=None, check=True, env=None, timeout=TIMEOUT):
        done = subprocess.run(
            [str(self.python), "manage.py", *args], cwd=self.dir, env=env or self.env(), input=input,
            capture_output=True, text=True, timeout=timeout,
        )
        if check:
            assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    def shell(self, code, settings=None, **params):
        """Run ``code`` in the host (``manage.py shell -c``); its last line of output, parsed as JSON."""
        extra = ("--settings", settings) if settings else ()
        output = self.run("shell", *extra, "-c", textwrap.dedent(code % params)).stdout
        return json.loads(output.strip().splitlines()[-1])

    def start(self, name, args, **env):
        proc = HostProc(name, args, cwd=self.dir, env=self.env(**env), log_dir=self.base)
        self.procs.append(proc)
        return proc

    def runserver(self, port, settings="hostproj.settings"):
        proc = self.start(
            f"runserver-{port}",
            [str(self.python), "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}", "--settings", settings],
        )
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60, what="runserver", procs=[proc])
        return proc


def _answers(url):
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _build_wheel(out_dir):
    """The wheel as `python -m build` makes it, from a copy of the sources (the tree stays clean)."""
    source = out_dir / "source"

    def ignore(directory, names):
        ignored = {name for name in names if name == "__pycache__" or name.endswith(".egg-info")}
        if Path(directory) == ROOT:
            ignored |= TOP_LEVEL_IGNORED & set(names)
        return ignored

    shutil.copytree(ROOT, source, ignore=ignore)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out_dir / "dist"), str(source)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = (out_dir / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def fake():
    with FakeWeCom(users=12, departments=3, seed=5) as fake:
        yield fake


@pytest.fixture(scope="module")
def host(tmp_path_factory, fake):
    base = tmp_path_factory.mktemp("host")
    wheel = _build_wheel(base)
    host = Host(base, fake)
    subprocess.run([sys.executable, "-m", "venv", str(host.venv)], check=True, timeout=TIMEOUT)
    # The wheel and a broker client, as a host installs them (extra "redis"); pip's cache keeps this short.
    pip = subprocess.run(
        [str(host.python), "-m", "pip", "install", "--quiet", f"{wheel}[redis]"],
        capture_output=True, text=True, timeout=TIMEOUT, env=host.env(),
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]

    subprocess.run(
        [str(host.venv / "bin" / "django-admin"), "startproject", "hostproj", str(host.dir.mkdir() or host.dir)],
        check=True, timeout=TIMEOUT, env=host.env(),
    )
    host.run("startapp", "accounts")
    (host.dir / "accounts" / "models.py").write_text(USER_MODEL)
    (host.dir / "accounts" / "admin.py").write_text(USER_ADMIN)
    project = host.dir / "hostproj"
    with open(project / "settings.py", "a") as settings:
        settings.write(HOST_SETTINGS % {"api_base": fake.api_base})
    (project / "urls.py").write_text(HOST_URLS)
    (project / "celery.py").write_text(HOST_CELERY)
    (project / "__init__.py").write_text('from .celery import app as celery_app\n\n__all__ = ("celery_app",)\n')
    (project / "settings_no_backend.py").write_text(NO_BACKEND)
    (project / "settings_no_broker.py").write_text(NO_BROKER)

    host.run("makemigrations", "accounts")
    host.run("migrate", "--noinput")
    host.run(
        "createsuperuser", "--noinput", "--username", SUPERUSER, "--email", "admin@example.com",
        env=host.env(DJANGO_SUPERUSER_PASSWORD=secrets.token_urlsafe(16)),
    )
    yield host
    for proc in host.procs:
        proc.stop()


@pytest.fixture(scope="module")
def tenant(host, fake):
    """A tenant configured with ``wecom_configure`` (secrets on stdin), its callback URLs on the runserver
    started for the module."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    callback = {kind: {"token": secrets.token_hex(8), "aes_key": aes_key()}
                for kind in ("app", "contacts", "customers")}
    values = {
        "secret": fake.secret, "contact_secret": fake.contact_secret, "customer_secret": fake.customer_secret,
        **{f"{OPTION_PREFIX[kind]}_token": value["token"] for kind, value in callback.items()},
        **{f"{OPTION_PREFIX[kind]}_aes_key": value["aes_key"] for kind, value in callback.items()},
    }
    done = host.run(
        "wecom_configure", "--tenant-code", "acme", "--tenant-name", "Acme", "--corp-id", fake.corp_id,
        "--agent-id", str(fake.agent_id), "--admin", SUPERUSER, "--base-url", base_url, "--from-json", "-",
        input=json.dumps(values),
    )
    printed = json.loads(done.stdout)
    server = host.runserver(port)
    return {"id": printed["tenant_id"], "printed": printed, "callback": callback, "base_url": base_url,
            "server": server}


def test_the_wheel_holds_the_two_apps_and_is_what_the_host_runs(host):
    seen = host.shell("""
        import importlib.util, json, wecom_integration, tenants
        print(json.dumps({"app": wecom_integration.__file__, "tenants": tenants.__file__,
                          "config": importlib.util.find_spec("config") is not None}))
    """)
    assert seen["app"].startswith(str(host.venv)), seen
    assert seen["tenants"].startswith(str(host.venv)), seen
    assert not seen["app"].startswith(str(ROOT)), seen
    # This repository's project is not installed into a host.
    assert seen["config"] is False
    site = Path(seen["app"]).parent
    assert (site / "templates" / "admin" / "wecom_integration" / "wecomconfig" / "change_form.html").exists()
    assert list((site / "migrations").glob("0001_*.py"))
    assert list((site / "locale" / "zh_Hans" / "LC_MESSAGES").glob("django.mo"))


def test_check_is_clean_with_a_minimal_host(host):
    done = host.run("check")
    assert "no issues" in done.stdout, done.stdout + done.stderr


def test_configure_prints_the_deployments_callback_urls(tenant):
    printed = tenant["printed"]
    assert printed["base_url"] == tenant["base_url"]
    assert printed["callback_urls"] == {
        kind: f"{tenant['base_url']}/wecom/callback/{tenant['id']}/{kind}/" for kind in ("app", "contacts", "customers")
    }


def test_callbacks_api_and_admin_in_the_host(host, fake, tenant):
    urls = tenant["printed"]["callback_urls"]
    # WeCom's URL verification, as when the admin saves the URL in WeCom: GET with the signed echostr.
    for kind in ("app", "contacts"):
        credentials = tenant["callback"][kind]
        fake.register_callback(urls[kind], credentials["token"], credentials["aes_key"], kind=kind, verify=True)
    # A contact change and a message from a member, pushed by WeCom and handled (eagerly) by the host.
    userid = next(iter(fake.org.users))
    (delivery,) = fake.add_user("host-new-member", "新成员", department=(1,))
    assert delivery.ok, delivery
    (delivery,) = fake.send_app_message(userid, "hello from WeCom")
    assert delivery.ok, delivery
    stored = host.shell("""
        import json
        from wecom_integration.models import CallbackEvent, InboxMessage
        print(json.dumps({"handled": CallbackEvent.objects.filter(status="handled").count(),
                          "inbox": list(InboxMessage.objects.values_list("content", flat=True))}))
    """)
    assert stored["handled"] == 2
    assert "hello from WeCom" in stored["inbox"]

    # A contact sync, started as the admin's Sync button does, runs in the host against the fake.
    synced = host.shell("""
        import json
        from tenants.models import Tenant
        from wecom_integration.models import SyncRun, WeComUser
        from wecom_integration.directory.sync import start_sync
        start_sync(Tenant.objects.get(pk=%(tenant)d))
        print(json.dumps({"runs": list(SyncRun.objects.values_list("status", flat=True)),
                          "members": WeComUser.objects.count()}))
    """, tenant=tenant["id"])
    assert synced["members"] >= len(fake.org.users), synced

    # Every admin page of both apps renders for a superuser; the host's admin keeps Django's titles.
    rendered = host.shell(RENDER_ADMIN, superuser=SUPERUSER)
    pages = rendered["pages"]
    post_only = {url: code for url, code in pages.items() if code == 405}
    assert set(post_only) <= {url for url in pages if url.endswith(("/start/", "/retry/", "/cancel/"))}, post_only
    broken = {url: code for url, code in pages.items() if code not in (200, 405)}
    assert broken == {}, broken
    assert any(url.endswith("/dashboard/") for url in pages) and any("/add/" in url for url in pages)
    assert rendered["index"] == 200
    assert (rendered["site_header"], rendered["site_title"]) == ("Django administration", "Django site admin")
    assert "Django administration" in rendered["index_html"]
    assert "WeCom integration" not in rendered["index_html"]

    base = tenant["base_url"]
    # The app's schema describes the app's endpoints only, without any drf-spectacular setting.
    schema = requests.get(f"{base}/api/schema/", headers={"Accept": "application/json"}, timeout=60)
    assert schema.status_code == 200, schema.text[:2000]
    paths = set(schema.json()["paths"])
    assert "/sys/thirdApp/sendMessageTest" in paths and "/api/wecom/users/" in paths
    assert all(path.startswith(("/api/", "/sys/")) for path in paths), paths
    assert requests.get(f"{base}/readyz", timeout=60).json()["status"] == "ready"

    # The API under DRF's default settings (SessionAuthentication, BasicAuthentication, AllowAny): the views
    # declare their own authentication (X-Access-Token) and permission. These asserts depend on that work
    # (the "api" branch of issue 15, item 3).
    token = host.run("drf_create_token", SUPERUSER).stdout.split()[2]
    headers = {"X-Access-Token": token, "X-Tenant-Id": str(tenant["id"])}
    sent_before = len(fake.sent_messages)
    body = {"app": "WECHAT_ENTERPRISE", "sendAll": True, "receiver": "", "content": "host test"}
    anonymous = {"X-Tenant-Id": str(tenant["id"])}
    refused = requests.post(f"{base}/sys/thirdApp/sendMessageTest", json=body, headers=anonymous, timeout=60)
    assert refused.status_code in (401, 403), refused.text
    assert len(fake.sent_messages) == sent_before
    listed = requests.get(f"{base}/api/wecom/users/", headers=anonymous, timeout=60)
    assert listed.status_code in (401, 403), listed.text
    # With the token: sendMessageTest works and reaches WeCom.
    answer = requests.post(f"{base}/sys/thirdApp/sendMessageTest", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.json()["success"], answer.text
    assert len(fake.sent_messages) == sent_before + 1
    users = requests.get(f"{base}/api/wecom/users/", headers=headers, timeout=60)
    assert users.status_code == 200, users.text


def test_the_checks_name_a_missing_backend_and_a_missing_broker(host):
    no_backend = host.run("check", "--settings", "hostproj.settings_no_backend", check=False)
    assert no_backend.returncode != 0
    assert "wecom_integration.E001" in no_backend.stderr
    assert "wecom_integration.login.backends.WeComBackend" in no_backend.stderr
    no_broker = host.run("check", "--settings", "hostproj.settings_no_broker", check=False)
    assert "wecom_integration.W003" in no_broker.stdout + no_broker.stderr


def test_wecom_sign_in_lands_on_a_page_that_exists(host):
    """Django's default LOGIN_REDIRECT_URL (/accounts/profile/) is no page of the host's."""
    landed = host.shell("""
        import json
        from django.contrib.auth import get_user_model
        from django.test import Client
        User = get_user_model()
        User.objects.create_user("plain", password="pw-host-1234")
        staff = Client(HTTP_HOST="localhost")
        staff.force_login(User.objects.get(username=%(superuser)r))
        from django.test import RequestFactory
        from wecom_integration.login.adapter import get_adapter
        request = RequestFactory().get("/")
        request.user = User.objects.get(username=%(superuser)r)
        for_staff = get_adapter(request).get_login_redirect_url(request, None)
        request.user = User.objects.get(username="plain")
        for_member = get_adapter(request).get_login_redirect_url(request, None)
        credentials = {"username": "plain", "password": "pw-host-1234"}
        form = Client(HTTP_HOST="localhost").post("/accounts/login/", credentials)
        followed = Client(HTTP_HOST="localhost").post("/accounts/login/", credentials, follow=True)
        print(json.dumps({"staff": for_staff, "member": for_member, "form": form.status_code,
                          "location": form.get("Location"), "final": followed.status_code}))
    """, superuser=SUPERUSER)
    assert landed["staff"] == "/admin/"
    # The host has no root page: the admin, which tells a non-staff user they are signed in but not allowed.
    assert landed["member"] == "/admin/"
    assert (landed["form"], landed["location"]) == (302, "/admin/")
    assert landed["final"] == 200


@pytest.mark.services
def test_a_worker_of_the_hosts_own_celery_app_handles_a_callback(host, fake, tenant, tmp_path):
    """LOGGING = {} and ``celery -A hostproj worker``: the app sets up no logging of its own, so the
    worker starts with Celery's, and handles the callback a web process of the host queued on Redis."""
    prefix = f"host-{uuid.uuid4().hex[:8]}-"
    (host.dir / "hostproj" / "settings_worker.py").write_text(textwrap.dedent(f"""
        from wecom_integration.celery_config import celery_settings

        from .settings import *  # noqa: F403

        # The app's routes, beat schedule and options, merged as docs/install.md shows (queue names
        # prefixed here so this test shares no queue with anything else on the broker).
        for _name, _value in celery_settings().items():
            globals()[_name] = _value
        CELERY_TASK_ROUTES = {{name: {{"queue": {prefix!r} + route["queue"]}}
                               for name, route in CELERY_TASK_ROUTES.items()}}
        CELERY_TASK_ALWAYS_EAGER = False
        CELERY_BROKER_URL = {os.environ["REDIS_URL"]!r}
    """))
    env = {"DJANGO_SETTINGS_MODULE": "hostproj.settings_worker"}
    worker = host.start(
        "worker",
        [str(host.venv / "bin" / "celery"), "-A", "hostproj", "worker", "-Q", f"{prefix}callbacks,{prefix}bulk",
         "-P", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        **env,
    )
    wait_for(lambda: "ready." in worker.log_path.read_text(errors="replace"), timeout=90, what="the worker",
             procs=[worker])
    port = free_port()
    host.runserver(port, settings="hostproj.settings_worker")
    credentials = tenant["callback"]["contacts"]
    url = f"http://127.0.0.1:{port}/wecom/callback/{tenant['id']}/contacts/"
    fake.register_callback(url, credentials["token"], credentials["aes_key"], kind="contacts", verify=True)
    (delivery,) = fake.add_user("via-worker", "经由工人", department=(1,))
    assert delivery.ok, delivery

    def handled():
        return host.shell("""
            import json
            from wecom_integration.models import CallbackEvent, WeComUser
            print(json.dumps(WeComUser.objects.filter(userid="via-worker").exists()
                             and not CallbackEvent.objects.exclude(status="handled").exists()))
        """)

    wait_for(handled, timeout=60, what="the host's worker to handle the callback", procs=[worker])
    assert worker.running()
    log = worker.log_path.read_text(errors="replace")
    assert "wecom_integration.tasks.handle_callback_event" in log
    worker.stop()


def write_worker_settings(host, name, prefix):
    """Settings of the host with the app's Celery routes (queue names prefixed: this test shares no queue
    with anything else on the broker), a real broker (REDIS_URL) and no eager tasks."""
    (host.dir / "hostproj" / f"{name}.py").write_text(textwrap.dedent(f"""
        from wecom_integration.celery_config import celery_settings

        from .settings import *  # noqa: F403

        for _name, _value in celery_settings().items():
            globals()[_name] = _value
        CELERY_TASK_ROUTES = {{name: {{"queue": {prefix!r} + route["queue"]}}
                               for name, route in CELERY_TASK_ROUTES.items()}}
        CELERY_TASK_ALWAYS_EAGER = False
        CELERY_BROKER_URL = {os.environ["REDIS_URL"]!r}
    """))
    return f"hostproj.{name}"


@pytest.mark.services
def test_a_sync_no_worker_takes_waits_is_cancelled_and_a_new_one_runs(host, fake, tenant):
    """(d) No worker: the sync shows as waiting for a worker with its queue, a tenant admin cancels it, a
    new sync is accepted, and once a worker is up it runs the new one and leaves the cancelled one alone."""
    prefix = f"host-{uuid.uuid4().hex[:8]}-"
    settings = write_worker_settings(host, "settings_no_worker", prefix)
    waiting = host.shell("""
        import json
        from datetime import timedelta
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.urls import reverse
        from django.utils import timezone
        from tenants.models import Tenant
        from wecom_integration.models import AuditLog, SyncRun
        from wecom_integration.directory.sync import start_sync
        tenant = Tenant.objects.get(pk=%(tenant)d)
        run = start_sync(tenant)  # queued on the broker; no worker consumes the queue
        # As if the setting's two minutes had passed.
        SyncRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=5))
        client = Client(HTTP_HOST="localhost")
        client.force_login(get_user_model().objects.get(username=%(superuser)r))
        state = client.get(reverse("admin:wecom_integration_syncrun_progress_json", args=[run.pk])).json()
        listing = client.get(reverse("admin:wecom_integration_syncrun_changelist")).content.decode()
        refused_while_waiting = False
        try:
            start_sync(tenant)
        except Exception:
            refused_while_waiting = True
        client.post(reverse("admin:wecom_integration_syncrun_changelist"),
                    {"action": "cancel_waiting", "_selected_action": [run.pk]})
        run.refresh_from_db()
        new = start_sync(tenant)
        print(json.dumps({"run": run.pk, "new": new.pk, "status": run.status, "state": state,
                          "listed": "Waiting for a worker" in listing or "等待后台进程" in listing,
                          "refused": refused_while_waiting,
                          "audited": AuditLog.objects.filter(action="cancel_sync").count()}))
    """, settings=settings, tenant=tenant["id"], superuser=SUPERUSER)
    assert waiting["state"]["waiting_for_worker"] is True, waiting
    assert waiting["state"]["queue"] == f"{prefix}bulk", waiting
    assert waiting["listed"] and waiting["refused"], waiting
    assert waiting["status"] == "cancelled" and waiting["audited"] >= 1, waiting

    worker = host.start(
        "worker-late",
        [str(host.venv / "bin" / "celery"), "-A", "hostproj", "worker", "-Q", f"{prefix}callbacks,{prefix}bulk",
         "-P", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        DJANGO_SETTINGS_MODULE=settings,
    )
    wait_for(lambda: "ready." in worker.log_path.read_text(errors="replace"), timeout=90, what="the worker",
             procs=[worker])

    def statuses():
        return host.shell("""
            import json
            from wecom_integration.models import SyncRun
            print(json.dumps(dict(SyncRun.objects.filter(pk__in=[%(run)d, %(new)d]).values_list("pk", "status"))))
        """, settings=settings, run=waiting["run"], new=waiting["new"])

    wait_for(lambda: statuses()[str(waiting["new"])] in ("review", "succeeded"), timeout=120,
             what="the late worker to run the new sync", procs=[worker])
    # Both tasks reached the worker; the cancelled run stayed cancelled.
    def received():
        log = worker.log_path.read_text(errors="replace").splitlines()
        return sum(1 for line in log if "run_contact_sync[" in line and "received" in line)

    wait_for(lambda: received() >= 2, timeout=60, what="the worker to take the cancelled run's task too",
             procs=[worker])
    assert statuses()[str(waiting["run"])] == "cancelled"
    worker.stop()


# A host with its own organisations (issue 24 item 1) -----------------------------------------------------


@pytest.fixture(scope="module")
def org_host(host, fake):
    """A second project in the same virtualenv: its own ``orgs.Organization`` and ``Seat`` models, an
    adapter subclass answering from them, ``WECOM_TENANT_MODEL`` set and ``tenants`` not installed."""
    org_host = Host(host.base, fake, site="orgsite")
    subprocess.run(
        [str(org_host.venv / "bin" / "django-admin"), "startproject", "orgproj",
         str(org_host.dir.mkdir() or org_host.dir)],
        check=True, timeout=TIMEOUT, env=org_host.env(),
    )
    org_host.run("startapp", "orgs")
    (org_host.dir / "orgs" / "models.py").write_text(ORG_MODELS)
    (org_host.dir / "orgs" / "wecom.py").write_text(ORG_ADAPTER)
    project = org_host.dir / "orgproj"
    with open(project / "settings.py", "a") as settings:
        settings.write(ORG_SETTINGS % {"api_base": fake.api_base})
    (project / "urls.py").write_text(HOST_URLS)
    (project / "celery.py").write_text(HOST_CELERY.replace("hostproj", "orgproj"))
    (project / "__init__.py").write_text('from .celery import app as celery_app\n\n__all__ = ("celery_app",)\n')
    yield org_host
    for proc in org_host.procs:
        proc.stop()


def test_a_host_with_its_own_organisations(org_host, fake):
    host = org_host
    # check, migrate: the app's migrations follow WECOM_TENANT_MODEL and do not change.
    host.run("makemigrations", "orgs")
    assert "no issues" in host.run("check").stdout
    host.run("migrate", "--noinput")
    assert "No changes detected" in host.run("makemigrations", "--check", "--dry-run").stdout
    made = host.shell("""
        import json, sys
        from django.apps import apps
        from django.contrib.auth import get_user_model
        from orgs.models import Organization, Seat
        from wecom_integration.models import WeComConfig
        User = get_user_model()
        org = Organization.objects.create(name="Acme Org")
        Organization.objects.create(name="Elsewhere")
        boss, member, stranger = (User.objects.create_user(name) for name in ("boss", "member", "stranger"))
        Seat.objects.create(user=boss, organization=org, owner=True)
        Seat.objects.create(user=member, organization=org)
        print(json.dumps({"org": org.pk, "tenants_installed": apps.is_installed("tenants"),
                          "tenants_imported": "tenants" in sys.modules,
                          "fk": WeComConfig._meta.get_field("tenant").related_model._meta.label}))
    """)
    assert made["tenants_installed"] is False and made["tenants_imported"] is False
    assert made["fk"] == "orgs.Organization"

    # configure an existing organisation by its id
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    credentials = {"token": secrets.token_hex(8), "aes_key": aes_key()}
    values = {"secret": fake.secret, "contact_secret": fake.contact_secret,
              "contact_token": credentials["token"], "contact_aes_key": credentials["aes_key"]}
    done = host.run(
        "wecom_configure", "--tenant-id", str(made["org"]), "--corp-id", fake.corp_id, "--agent-id",
        str(fake.agent_id), "--base-url", base_url, "--from-json", "-", input=json.dumps(values),
    )
    printed = json.loads(done.stdout)
    assert printed["tenant_id"] == made["org"]
    host.runserver(port, settings="orgproj.settings")

    # a verified callback, and a contact change handled
    url = printed["callback_urls"]["contacts"]
    assert url == f"{base_url}/wecom/callback/{made['org']}/contacts/"
    fake.register_callback(url, credentials["token"], credentials["aes_key"], kind="contacts", verify=True)
    (delivery,) = fake.add_user("org-new-member", "组织新成员", department=(1,))
    assert delivery.ok, delivery

    # a sync against the fake, its accounts' memberships in the host's seats
    synced = host.shell("""
        import json
        from orgs.models import Organization
        from wecom_integration.models import CallbackEvent, SyncRun, WeComUser
        from wecom_integration.services import sync
        from wecom_integration.directory.sync import start_sync
        org = Organization.objects.get(pk=%(org)d)
        run = start_sync(org)
        run.refresh_from_db()
        counts = sync.confirm_run(run, create_unmatched=True) if run.status == "review" else {}
        print(json.dumps({"status": run.status, "members": WeComUser.objects.filter(tenant=org).count(),
                          "callback": WeComUser.objects.filter(tenant=org, userid="org-new-member").exists(),
                          "handled": CallbackEvent.objects.filter(status="handled").count(),
                          "seats": org.seat_set.count(), "created": counts.get("created", 0)}))
    """, org=made["org"])
    assert synced["callback"] is True and synced["handled"] >= 1, synced
    assert synced["status"] == "review" and synced["members"] >= len(fake.org.users), synced
    assert synced["created"] > 0 and synced["seats"] == 2 + synced["created"], synced

    # sendMessageTest: the organisation's owner may send to @all; a non-member and a plain member may not.
    tokens = {name: host.run("drf_create_token", name).stdout.split()[2] for name in ("boss", "member", "stranger")}
    body = {"app": "WECHAT_ENTERPRISE", "sendAll": True, "receiver": "", "content": "org host test"}
    before = len(fake.sent_messages)

    def send(name):
        headers = {"X-Access-Token": tokens[name], "X-Tenant-Id": str(made["org"])}
        return requests.post(f"{base_url}/sys/thirdApp/sendMessageTest", json=body, headers=headers, timeout=60)

    assert send("stranger").status_code == 403
    assert send("member").status_code == 403
    assert len(fake.sent_messages) == before
    allowed = send("boss")
    assert allowed.status_code == 200 and allowed.json()["success"], allowed.text
    assert len(fake.sent_messages) == before + 1 and fake.sent_messages[-1]["touser"] == "@all"
    # No tenant 0 in this host: the API asks for X-Tenant-Id.
    bare = requests.post(f"{base_url}/sys/thirdApp/sendMessageTest", json=body,
                         headers={"X-Access-Token": tokens["boss"]}, timeout=60)
    assert bare.status_code == 400, bare.text
