"""A faithful fake of WeCom's server API (qyapi.weixin.qq.com/cgi-bin/…) over real HTTP.

Tests, the demo and the benchmarks talk to this instead of WeCom. It is pure Python (stdlib,
requests, defusedxml) so it runs without Django. One module per WeCom API group, mirroring
wecom_integration/client/api/, around a small core; each module's docstring says what it models and
links the WeCom pages it follows:

* core.py: FakeWeCom, tokens (gettoken), the dispatcher and the merged routing table (ROUTES), secret
  kinds, trusted IPs, time; limits.py: rate limits and fault injection;
* user.py, department.py: the contact book's reads and changes; oauth.py: sign-in codes, user tickets and
  two-step verification; message.py: message/send; card.py: template cards once sent (the card rules, clicks
  pushed as template_card_event, update_template_card, recall, the WeCom-app card screen);
  externalcontact.py: customer contact; menu.py, media.py: the app's menu and temporary media;
* push.py: the callbacks the fake sends; control.py: the ``/fake/…`` test-control endpoint; http.py: the
  HTTP server;
* org.py, orgmodel.py, orgdata.py: the generated organisation.

docs/fake-wecom.md lists every behaviour with its doc page and test, and what the fake does not model.
wecom_integration.testing.server and wecom_integration.testing.org re-export all of it under the old names.
"""

from .base import FakeWeComError
from .core import ROUTES, FakeWeCom
from .http import serve_until_signalled
from .org import Org
from .push import CALLBACK_KINDS

__all__ = ["CALLBACK_KINDS", "ROUTES", "FakeWeCom", "FakeWeComError", "Org", "serve_until_signalled"]
