"""The trusted-domain verification file (``WW_verify_<code>.txt``) at the site's root.

WeCom proves an app's trusted domain (可信域名) by fetching the file it gave the admin from the domain's
root, and only then lets the admin save trusted IPs. A tenant admin uploads the file in the admin; this
view serves it byte for byte, so nobody has to touch the web server.
(wecom-facts: docs 96067 and 96079 on trusted IPs since 2022; 应用管理 → 网页授权及JS-SDK → 申请校验域名)
"""

from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from wecom_integration.models import DOMAIN_FILE_RE, DomainVerificationFile


@require_safe
@never_cache
def verification_file(request, name):
    """The uploaded file ``name``, exactly as uploaded, as text/plain; 404 for any other name."""
    if not DOMAIN_FILE_RE.match(name):
        raise Http404
    content = DomainVerificationFile.objects.filter(name=name).values_list("content", flat=True).first()
    if content is None:
        raise Http404
    response = HttpResponse(bytes(content), content_type="text/plain")
    response["X-Content-Type-Options"] = "nosniff"
    return response
