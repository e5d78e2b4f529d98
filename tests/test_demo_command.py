"""`manage.py wecom_demo --no-server`: a second run says how to reset the demo password instead of hiding it."""

import io
import socket

import pytest
from django.core.management import call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_demo(port):
    out = io.StringIO()
    with override_settings(WECOM={"API_BASE": f"http://127.0.0.1:{port}"}):
        call_command(
            "wecom_demo", "--no-server", "--fake-port", str(port), "--users", "20", "--departments", "3", stdout=out
        )
    return out.getvalue()


def test_second_demo_run_prints_how_to_reset_the_password():
    first = _run_demo(_free_port())
    assert "Log in as:  demo / " in first
    assert "changepassword" not in first

    second = _run_demo(_free_port())
    assert "manage.py changepassword demo" in second
    assert "Log in as:  demo / " not in second
