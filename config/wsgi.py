import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# Import the URLconf (and the API views behind it) now, while the worker boots, not on its first request:
# WeCom's URL verification must be answered within 1 s, and it may be the first request a new worker gets
# (bench/url_verify.py measures it).
get_resolver().url_patterns  # noqa: B018 - the access is the point: it imports the URLconf
