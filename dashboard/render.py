"""Span content rendered for people: chat messages as a conversation, JSON folded and
highlighted, long text collapsed with its size. Every string of the span goes through
`escape`; only the markup composed here is marked safe."""

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# JSON objects and arrays this deep and deeper start folded.
OPEN_DEPTH = 2


def content(value) -> SafeString:
    """HTML for a span's input or output (None: nothing stored)."""
    if value is None:
        return mark_safe('<p class="muted">nothing stored</p>')
    messages = _messages(value)
    if messages is not None:
        return mark_safe(_conversation(messages))
    if isinstance(value, str):
        return mark_safe(_text(value))
    return mark_safe(f'<div class="json">{_json(value, 0)}</div>')


def json_value(value) -> SafeString:
    return mark_safe(f'<div class="json">{_json(value, 0)}</div>')


def _is_message(item) -> bool:
    return isinstance(item, dict) and isinstance(item.get("role"), str) and (
        "content" in item or "tool_calls" in item)


def _messages(value) -> list[dict] | None:
    """The chat messages in `value` when it is one of the shapes chat APIs use: a list of
    messages, {"messages": [...]}, an OpenAI answer {"choices": [{"message": ...}]}, or
    a single message."""
    if isinstance(value, list) and value and all(_is_message(item) for item in value):
        return value
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list) and value["messages"] and all(
                _is_message(m) for m in value["messages"]):
            return value["messages"]
        choices = value.get("choices")
        if isinstance(choices, list) and choices and all(
                isinstance(c, dict) and _is_message(c.get("message")) for c in choices):
            return [c["message"] for c in choices]
        if _is_message(value):
            return [value]
    return None


def _conversation(messages: list[dict]) -> str:
    parts = []
    for message in messages:
        role = message["role"]
        body = _message_body(message.get("content"))
        extra = {k: v for k, v in message.items() if k not in ("role", "content")}
        if extra:
            body += _json(extra, OPEN_DEPTH - 1)
        css = role if role in ("user", "assistant", "system", "tool") else "other"
        parts.append(f'<div class="msg {css}"><div class="role">{escape(role)}</div>'
                     f"{body}</div>")
    return f'<div class="chat">{"".join(parts)}</div>'


def _message_body(body) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return _text(body)
    if isinstance(body, list):  # content parts: text parts as text, the rest as JSON
        return "".join(
            _text(part["text"]) if isinstance(part, dict) and isinstance(part.get("text"), str)
            else f'<div class="json">{_json(part, OPEN_DEPTH - 1)}</div>' for part in body)
    return f'<div class="json">{_json(body, OPEN_DEPTH - 1)}</div>'


def _size(text: str) -> str:
    return f"{len(text):,} characters, {filesizeformat(len(text.encode()))}"


def _text(text: str) -> str:
    fold = settings.DASHBOARD_FOLD_TEXT_CHARS
    if len(text) <= fold:
        return f'<pre class="text">{escape(text)}</pre>'
    return (f'<pre class="text preview">{escape(text[:fold])}…</pre>'
            f'<details class="fold"><summary>Show all ({_size(text)})</summary>'
            f'<pre class="text">{escape(text)}</pre></details>')


def _json(value, depth: int) -> str:
    if isinstance(value, dict):
        if not value:
            return "{}"
        rows = "".join(f'<li><span class="k">{escape(_quoted(key))}</span>: '
                       f"{_json(item, depth + 1)}</li>" for key, item in value.items())
        summary = f"{{…}} {len(value)} key{'s' if len(value) != 1 else ''}"
        return _fold(summary, f'<ul class="jl">{rows}</ul>', depth)
    if isinstance(value, list):
        if not value:
            return "[]"
        rows = "".join(f"<li>{_json(item, depth + 1)}</li>" for item in value)
        summary = f"[…] {len(value)} item{'s' if len(value) != 1 else ''}"
        return _fold(summary, f'<ol class="jl" start="0">{rows}</ol>', depth)
    if isinstance(value, str):
        if len(value) > settings.DASHBOARD_FOLD_TEXT_CHARS:
            return f'<span class="s">{_text(value)}</span>'
        return f'<span class="s">{escape(_quoted(value))}</span>'
    if isinstance(value, bool) or value is None:
        return f'<span class="b">{"null" if value is None else str(value).lower()}</span>'
    return f'<span class="n">{escape(str(value))}</span>'


def _fold(summary: str, body: str, depth: int) -> str:
    state = " open" if depth < OPEN_DEPTH else ""
    return f'<details class="jf"{state}><summary>{summary}</summary>{body}</details>'


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def last_user_message(value):
    """What the person said last in a chat input (the whole input when it is not a chat)."""
    messages = _messages(value)
    if messages:
        said = [m for m in messages if m.get("role") == "user"]
        if said:
            return said[-1].get("content")
    return value
