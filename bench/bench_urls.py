"""The project's URLs plus a bare view that only answers "success": the bench's baseline for what
Django and gunicorn cost per request, so the callback endpoint's figures can be read against it.
Only bench/bench_settings.py uses this module; production URLs never carry the view."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def bare_success(request):
    return HttpResponse(b"success", content_type="text/plain; charset=utf-8")


urlpatterns = [path("bench/success/", bare_success, name="bench-success"), *project_urlpatterns]
