# Placeholder replaced by the callbacks work (issue 4).
from django.http import HttpResponse
from django.views import View


class _Pending(View):
    def dispatch(self, request, *args, **kwargs):
        return HttpResponse(status=503)


AppCallbackView = ContactCallbackView = CustomerCallbackView = _Pending
