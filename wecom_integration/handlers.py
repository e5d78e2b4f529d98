"""Every room's rows of the callback table (:mod:`wecom_integration.callbacks.registry`), registered on import.

Imported by :meth:`WeComIntegrationConfig.ready`; a new capability adds its ``handlers`` module here.
"""

from wecom_integration.approvals import handlers as approvals  # noqa: F401
from wecom_integration.customers import handlers as customers  # noqa: F401
from wecom_integration.directory import handlers as directory  # noqa: F401
from wecom_integration.login import handlers as login  # noqa: F401
from wecom_integration.messaging import handlers as messaging  # noqa: F401
