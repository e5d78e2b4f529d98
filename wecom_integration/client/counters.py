"""Per-process counters of the client's work, and a hook list for metrics exporters.

``stats`` counts; ``listeners`` get every event as ``listener(event, data)``, e.g. to feed Prometheus:

    from wecom_integration.client import listeners
    listeners.append(lambda event, data: ...)

Events: ``"call"`` {path, kind, errcode ("network" when WeCom gave no answer), seconds},
``"gettoken"`` {kind}, ``"retry"`` {path, reason},
``"rate_budget_wait"`` {corp, seconds}. A listener that raises is logged and skipped: metrics must
never break an API call.
"""

import logging
import threading
from collections import Counter

logger = logging.getLogger(__name__)

listeners = []


class ClientStats:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        self.gettoken_by_kind = Counter()
        self.calls_by_path = Counter()
        self.errors_by_code = Counter()
        self.retries = Counter()
        self.rate_budget_waits = 0
        self.rate_budget_wait_seconds = 0.0

    @property
    def gettoken_count(self):
        return sum(self.gettoken_by_kind.values())

    def record(self, event, **data):
        with self._lock:
            if event == "call":
                self.calls_by_path[data["path"]] += 1
                if data.get("errcode"):
                    self.errors_by_code[data["errcode"]] += 1
            elif event == "gettoken":
                self.gettoken_by_kind[data["kind"]] += 1
            elif event == "retry":
                self.retries[data["reason"]] += 1
            elif event == "rate_budget_wait":
                self.rate_budget_waits += 1
                self.rate_budget_wait_seconds += data["seconds"]
        for listener in list(listeners):
            try:
                listener(event, data)
            except Exception:
                logger.exception("WeCom client stats listener %r failed", listener)


stats = ClientStats()
