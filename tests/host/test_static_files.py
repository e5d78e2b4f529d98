"""Static files as production serves them: collectstatic into STATIC_ROOT with the project's manifest
storage (hashed, compressed copies), pages naming the hashed files, WhiteNoise serving them with DEBUG off.

The rest of the suite renders pages with the plain storage (tests/conftest.py), so this is the test that
runs the project's own STORAGES.
"""

import gzip
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from config import settings as project_settings


@pytest.fixture
def collected(settings, tmp_path):
    """The project's storage, its files collected into a fresh STATIC_ROOT; returns (root, manifest)."""
    settings.DEBUG = False
    settings.STATIC_ROOT = str(tmp_path / "static")
    settings.STORAGES = project_settings.STORAGES
    call_command("collectstatic", "--noinput", verbosity=0)
    root = Path(settings.STATIC_ROOT)
    return root, json.loads((root / "staticfiles.json").read_text())["paths"]


def test_the_project_stores_static_files_hashed_and_compressed_and_serves_them_with_whitenoise():
    assert project_settings.STORAGES["staticfiles"]["BACKEND"] == (
        "whitenoise.storage.CompressedManifestStaticFilesStorage"
    )
    middleware = project_settings.MIDDLEWARE
    assert middleware[middleware.index("django.middleware.security.SecurityMiddleware") + 1] == (
        "whitenoise.middleware.WhiteNoiseMiddleware"
    )
    assert django_settings.STORAGES["staticfiles"]["BACKEND"].endswith("StaticFilesStorage")


@pytest.mark.django_db
def test_collectstatic_names_files_by_hash_and_whitenoise_serves_them(collected, client):
    root, manifest = collected
    hashed = manifest["admin/css/base.css"]
    assert hashed != "admin/css/base.css" and hashed.startswith("admin/css/base.")
    assert (root / f"{hashed}.gz").is_file()

    page = client.get("/admin/login/")
    assert page.status_code == 200
    assert f'href="/static/{hashed}"' in page.content.decode()

    response = client.get(f"/static/{hashed}", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
    assert response["Content-Encoding"] == "gzip"
    assert "immutable" in response["Cache-Control"]
    body = gzip.decompress(b"".join(response.streaming_content))
    assert body == (root / hashed).read_bytes()
    assert b"--header-bg" in body

    plain = client.get(f"/static/{hashed}")
    assert plain.status_code == 200 and "Content-Encoding" not in plain
    assert client.get("/static/admin/css/no-such-file.css").status_code == 404
