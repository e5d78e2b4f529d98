"""Multi-tenant WeCom (企业微信) integration for Django."""

from wecom_integration import _moved

_moved.install()
