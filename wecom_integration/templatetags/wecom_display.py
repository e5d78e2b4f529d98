"""``{% load wecom_display %}``: ``{{ value|labelled }}`` shows a structured value as a labelled table."""

from django import template

from wecom_integration.display import labelled as _labelled

register = template.Library()


@register.filter
def labelled(value):
    return _labelled(value)
