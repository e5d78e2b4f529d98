"""Admin screens of the WeCom app: each room registers its own; this imports them all.

``wecom_integration.scoping`` holds what every room's screens share (tenant scoping, the read-only base).
"""

from wecom_integration.approvals import admin as approvals_admin  # noqa: F401
from wecom_integration.callbacks import admin as callbacks_admin  # noqa: F401
from wecom_integration.configuration import admin as configuration_admin  # noqa: F401
from wecom_integration.customers import admin as customers_admin  # noqa: F401
from wecom_integration.directory import admin as directory_admin  # noqa: F401
from wecom_integration.directory import (
    admin_sync,  # noqa: F401
    admin_tags,  # noqa: F401
)
from wecom_integration.messaging import admin as messaging_admin  # noqa: F401
from wecom_integration.messaging import admin_cards, admin_inbox  # noqa: F401
