"""#22 item 5: the trusted-domain verification file, uploaded in the admin and served at the root."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.factories import make_tenant, make_tenant_admin
from wecom_integration.models import DomainVerificationFile

pytestmark = pytest.mark.django_db

NAME = "WW_verify_Ab12Cd34Ef56Gh78.txt"
# WeCom's file holds its code; odd bytes (no newline, a trailing space, a non-ASCII byte) prove byte for byte.
CONTENT = b"Ab12Cd34Ef56Gh78 \xe4\xb8\xad"


@pytest.fixture
def tenant():
    return make_tenant("acme")


def admin_client(tenant, language="en"):
    browser = Client(headers={"accept-language": language})
    browser.force_login(make_tenant_admin(f"boss-{language}", tenant))
    return browser


def upload(browser, tenant, name, content):
    return browser.post(
        reverse("admin:wecom_integration_domainverificationfile_add"),
        {"tenant": tenant.pk, "upload": SimpleUploadedFile(name, content, content_type="text/plain")},
    )


def test_uploaded_in_the_admin_and_served_byte_for_byte(tenant):
    browser = admin_client(tenant)
    response = upload(browser, tenant, NAME, CONTENT)
    assert response.status_code == 302, response.content.decode()
    stored = DomainVerificationFile.objects.get()
    assert (stored.name, stored.tenant, bytes(stored.content)) == (NAME, tenant, CONTENT)

    served = Client().get(f"/{NAME}")
    assert served.status_code == 200
    assert served.content == CONTENT
    assert served["Content-Type"] == "text/plain"

    listing = browser.get(reverse("admin:wecom_integration_domainverificationfile_changelist")).content.decode()
    assert f'href="/{NAME}"' in listing


@pytest.mark.parametrize(
    "name",
    [
        "verify.txt",
        "WW_verify_.txt",
        "WW_verify_abc.txt",
        "WW_verify_Ab12Cd34Ef56Gh78.html",
        "WW_verify_Ab12-Cd34Ef56.txt",
    ],
)
def test_bad_names_are_refused(tenant, name):
    response = upload(admin_client(tenant), tenant, name, CONTENT)
    assert response.status_code == 200
    assert "WW_verify_AbCd1234EfGh5678.txt" in response.content.decode()
    assert not DomainVerificationFile.objects.exists()


@pytest.mark.parametrize("language, message", [("en", "larger than 1024 bytes"), ("zh-hans", "大于 1024 字节")])
def test_large_files_are_refused(tenant, language, message):
    response = upload(admin_client(tenant, language), tenant, NAME, b"x" * 1025)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not DomainVerificationFile.objects.exists()


def test_unknown_code_and_other_paths_are_404(tenant):
    DomainVerificationFile.objects.create(tenant=tenant, name=NAME, content=CONTENT)
    browser = Client()
    assert browser.get("/WW_verify_Zz99Yy88Xx77Ww66.txt").status_code == 404
    assert browser.get("/WW_verify_abc.txt").status_code == 404
    assert browser.get(f"/{NAME}x").status_code == 404
    assert browser.post(f"/{NAME}").status_code == 405


def test_a_name_is_served_for_one_tenant_only(tenant):
    DomainVerificationFile.objects.create(tenant=tenant, name=NAME, content=CONTENT)
    other = make_tenant("other")
    response = upload(admin_client(other), other, NAME, b"different")
    assert response.status_code == 200
    assert bytes(DomainVerificationFile.objects.get().content) == CONTENT
