"""Multi-tenant WeCom (企业微信) integration for Django."""

