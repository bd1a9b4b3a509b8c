"""Template filters of the dashboard: span content for people (see dashboard.render)."""

from django import template

from dashboard import render

register = template.Library()


@register.filter
def span_content(value):
    return render.content(value)


@register.filter
def as_json(value):
    return render.json_value(value)
