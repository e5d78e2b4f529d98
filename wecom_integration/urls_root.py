"""URLs that must sit at the root of the host's site, outside any prefix.

Include it without a prefix in the project's ``urls.py``::

    path("", include("wecom_integration.urls_root")),

``/WW_verify_<code>.txt``: the trusted-domain verification file a tenant admin uploaded (see
:mod:`wecom_integration.configuration.views`).
"""

from django.urls import re_path

from wecom_integration.configuration import views as domain

urlpatterns = [
    re_path(r"^(?P<name>WW_verify_[A-Za-z0-9]{8,64}\.txt)$", domain.verification_file, name="wecom-domain-file"),
]
