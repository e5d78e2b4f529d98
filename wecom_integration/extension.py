"""Where host code plugs in: the adapter named by ``WECOM["ADAPTER"]``, found by its dotted path.

Every room asks :func:`get_adapter` for policy decisions (which account a WeCom member is, who may sign
in, which tenants a user administers). The default class lives in the login room
(:class:`wecom_integration.login.adapter.DefaultWeComAdapter`); this foundation names it only as a string,
so asking for the adapter imports no room.
"""

from django.utils.module_loading import import_string

from wecom_integration.conf import wecom_settings


def get_adapter(request=None):
    """An instance of the adapter class named by ``WECOM["ADAPTER"]``."""
    return import_string(wecom_settings.ADAPTER)(request)
