"""`make demo`'s own server in a real browser: the admin is styled with DEBUG off.

The other browser tests run against pytest-django's live server, which serves static files itself, so an
admin without CSS there says nothing about the demo or a deployment. This one starts the demo as
`make demo` does (migrate, collectstatic, ``manage.py wecom_demo`` with the fake WeCom), with its own
SQLite file and STATIC_ROOT in a temporary directory, DEBUG off, on free ports; logs in with the login the
command prints; and checks the stylesheet arrives through WhiteNoise under its hashed name and is applied.
"""

import re
import subprocess

import pytest
import requests

from tests.operations.test_scale_out import BIN, ROOT, Proc, base_env, free_port, wait_for, wait_http_ok

LOGIN_LINE = re.compile(r"Log in as:\s+(\S+) / (\S+)")
TENANT_LINE = re.compile(r"Tenant:.*\(id (\d+)\)")
HASHED_BASE_CSS = re.compile(r"/static/admin/css/base\.[0-9a-f]{12}\.css$")
# The computed style of an element no stylesheet touches: what an unstyled admin shows.
HEADER_STYLE_JS = """
() => {
  const pick = (el) => { const s = getComputedStyle(el); return {background: s.backgroundColor, color: s.color,
    font: s.fontFamily, display: s.display}; };
  const bare = document.createElement("div");
  document.documentElement.appendChild(bare);
  const result = {header: pick(document.getElementById("header")), bare: pick(bare),
    sheets: Array.from(document.styleSheets).filter((s) => s.href).map((s) => [s.href, s.cssRules.length])};
  bare.remove();
  return result;
}
"""


def run(command, env, timeout=300):
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture
def demo_server(tmp_path, chromium_executable):
    """`make demo` on free ports in ``tmp_path``; yields (base URL, username, password, tenant id, process)."""
    port, fake_port = free_port(), free_port()
    env = base_env(
        DEBUG="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        STATIC_ROOT=tmp_path / "static",
        WECOM_API_BASE=f"http://127.0.0.1:{fake_port}",
        REDIS_URL=None,
        SECURE=None,
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    python = str(BIN / "python")
    run([python, "manage.py", "migrate", "--noinput"], env)
    run([python, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], env)
    proc = Proc(
        "demo",
        f"{python} manage.py wecom_demo --fake-port {fake_port} --addr 127.0.0.1:{port}",
        env,
        tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        login = wait_for(lambda: LOGIN_LINE.search(proc.output()), timeout=120, what="the demo's login", procs=[proc])
        wait_http_ok(f"{base}/admin/login/", timeout=60, procs=[proc])
        tenant_id = TENANT_LINE.search(proc.output()).group(1)
        yield base, login.group(1), login.group(2), tenant_id, proc
    finally:
        proc.stop()
    assert not proc.running()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/admin/login/", timeout=5)


def test_the_demo_server_serves_a_styled_admin_with_debug_off(demo_server, open_browser, screenshots_dir):
    base, username, password, tenant_id, proc = demo_server
    page = open_browser("en-US")
    failed = []

    def record(response):
        if response.status >= 400 and "/static/" in response.url:
            failed.append(f"{response.status} {response.url}")

    page.on("response", record)

    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    assert page.url == f"{base}/admin/"

    stylesheet = page.eval_on_selector('link[rel=stylesheet][href*="admin/css/base"]', "link => link.href")
    assert HASHED_BASE_CSS.search(stylesheet), stylesheet
    response = requests.get(stylesheet, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert response.headers.get("Content-Encoding") == "gzip"
    assert "immutable" in response.headers["Cache-Control"]
    assert "--header-bg" in response.text

    style = page.evaluate(HEADER_STYLE_JS)
    assert stylesheet in dict(style["sheets"]) and dict(style["sheets"])[stylesheet] > 50, style["sheets"]
    assert style["header"]["background"] != style["bare"]["background"], style
    assert style["header"]["color"] != style["bare"]["color"], style
    assert style["header"]["display"] == "flex", style
    assert not failed, failed

    page.screenshot(path=str(screenshots_dir / "demo-admin-styled.png"), full_page=False)

    # The tenant's page: the tenants app's own templates and styles (its dashboard cards).
    page.goto(f"{base}/admin/tenants/tenant/{tenant_id}/change/")
    card = page.wait_for_selector("#dash-last-sync")
    assert card.evaluate("el => getComputedStyle(el).borderTopStyle") == "solid"
    assert page.eval_on_selector(".dash-cards", "el => getComputedStyle(el).display") == "grid"
    page.screenshot(path=str(screenshots_dir / "demo-tenant-styled.png"), full_page=False)
    assert not failed, failed
    assert "Traceback" not in proc.output()
