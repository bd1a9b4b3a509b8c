"""What the app calls: `@observe`, `span()`, `set_trace()`. Spans carry the attributes of the
platform's mapping table (OpenInference names: `openinference.span.kind`, `input.value`,
`output.value`, `user.id`, `session.id`, `tag.tags`, `metadata`). Every SDK step guards its
own errors: the app's code runs, and its exceptions pass, exactly as without the SDK."""

import functools
import inspect
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import Span, Status, StatusCode

from .config import log

# Our kinds (the platform's span kinds) -> OpenInference's span kind.
KINDS = {"llm": "LLM", "chain": "CHAIN", "tool": "TOOL", "agent": "AGENT",
         "retrieval": "RETRIEVER", "retriever": "RETRIEVER", "embedding": "EMBEDDING",
         "other": "UNKNOWN"}
# A generator's output is the list of what it yielded, up to this many items.
MAX_YIELDED_ITEMS = 1000

_state = {"tracer": None, "on_error": None}


def _tracer() -> trace.Tracer:
    return _state["tracer"] or trace.get_tracer("llmops_sdk")


def _guard(what: str) -> None:
    log.exception("llmops_sdk: %s failed", what)
    if _state["on_error"]:
        _state["on_error"]()


def to_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<{type(value).__name__} that cannot be shown>"


def _set_value(span: Span, prefix: str, value: Any) -> None:
    span.set_attribute(f"{prefix}.value", to_json(value))
    span.set_attribute(f"{prefix}.mime_type",
                       "text/plain" if isinstance(value, str) else "application/json")


class SpanHandle:
    """The span a `span()` block or `@observe` function is in, to add what it learns."""

    def __init__(self, span: Span) -> None:
        self.otel_span = span

    def _safely(self, what: str, step: Callable[[], None]) -> "SpanHandle":
        try:
            step()
        except Exception:
            _guard(what)
        return self

    def set_input(self, value: Any) -> "SpanHandle":
        return self._safely("set_input", lambda: _set_value(self.otel_span, "input", value))

    def set_output(self, value: Any) -> "SpanHandle":
        return self._safely("set_output", lambda: _set_value(self.otel_span, "output", value))

    def set_model(self, model: str, provider: str | None = None) -> "SpanHandle":
        def step():
            self.otel_span.set_attribute("llm.model_name", model)
            if provider:
                self.otel_span.set_attribute("llm.provider", provider)
        return self._safely("set_model", step)

    def set_usage(self, *, input_tokens: int | None = None, output_tokens: int | None = None,
                  cached_input_tokens: int | None = None) -> "SpanHandle":
        names = {"llm.token_count.prompt": input_tokens,
                 "llm.token_count.completion": output_tokens,
                 "llm.token_count.prompt_details.cache_read": cached_input_tokens}
        return self._safely("set_usage", lambda: self.otel_span.set_attributes(
            {name: int(value) for name, value in names.items() if value is not None}))

    def set_attributes(self, attributes: dict[str, Any]) -> "SpanHandle":
        return self._safely("set_attributes", lambda: self.otel_span.set_attributes(attributes))


def _start(name: str, kind: str, attributes: dict | None) -> Span:
    span = _tracer().start_span(name)
    span.set_attribute("openinference.span.kind", KINDS.get(kind.lower(), "UNKNOWN"))
    if attributes:
        span.set_attributes(attributes)
    return span


def _fail(span: Span, error: BaseException) -> None:
    try:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    except Exception:
        _guard("recording an error")


def _end(span: Span | None) -> None:
    if span is None:
        return
    try:
        span.end()
    except Exception:
        _guard("ending a span")


@contextmanager
def span(name: str, *, kind: str = "chain", input: Any = None,
         attributes: dict | None = None) -> Iterator[SpanHandle]:
    """`with span("retrieve", kind="retrieval", input=query) as s: ...; s.set_output(docs)`"""
    otel_span, token = None, None
    try:
        otel_span = _start(name, kind, attributes)
        if input is not None:
            _set_value(otel_span, "input", input)
        token = otel_context.attach(trace.set_span_in_context(otel_span))
    except Exception:
        _guard("span()")
    handle = SpanHandle(otel_span or trace.INVALID_SPAN)
    try:
        yield handle
    except BaseException as error:
        if otel_span is not None:
            _fail(otel_span, error)
        raise
    finally:
        _detach(token)
        _end(otel_span)


def _detach(token) -> None:
    if token is not None:
        try:
            otel_context.detach(token)
        except Exception:
            _guard("detaching the span's context")


def _inputs(function: Callable, args: tuple, kwargs: dict) -> dict:
    bound = inspect.signature(function).bind_partial(*args, **kwargs)
    bound.apply_defaults()
    values = dict(bound.arguments)
    for name in ("self", "cls"):
        values.pop(name, None)
    return values


def observe(name: str | None = None, *, kind: str = "chain", capture_input: bool = True,
            capture_output: bool = True) -> Callable:
    """A span around each call of the decorated function (sync, async, generator or async
    generator): its name (default: the function's qualified name), its kind, its arguments
    as `input.value` and what it returned (or yielded, as a list) as `output.value`. Use
    `@observe()` or plain `@observe`."""
    if callable(name):  # @observe without parentheses
        return observe()(name)

    def decorate(function: Callable) -> Callable:
        span_name = name or function.__qualname__

        def begin(args, kwargs):
            try:
                otel_span = _start(span_name, kind, None)
            except Exception:
                _guard(f"starting span {span_name!r}")
                return None
            if capture_input:
                try:
                    _set_value(otel_span, "input", _inputs(function, args, kwargs))
                except Exception:  # the span goes on without its input
                    _guard(f"capturing the input of {span_name!r}")
            return otel_span

        def finish(otel_span, output) -> None:
            if otel_span is not None and capture_output:
                try:
                    _set_value(otel_span, "output", output)
                except Exception:
                    _guard("capturing the output")
            _end(otel_span)

        def enter(otel_span):
            if otel_span is None:
                return None
            try:
                return otel_context.attach(trace.set_span_in_context(otel_span))
            except Exception:
                _guard("attaching the span's context")
                return None

        if inspect.isasyncgenfunction(function):
            @functools.wraps(function)
            async def async_generator(*args, **kwargs):
                otel_span = begin(args, kwargs)
                items: list = []
                generator = function(*args, **kwargs)
                try:
                    sent = None
                    while True:
                        token = enter(otel_span)
                        try:
                            item = await generator.asend(sent)
                        except StopAsyncIteration:
                            break
                        finally:
                            _detach(token)
                        if len(items) < MAX_YIELDED_ITEMS:
                            items.append(item)
                        sent = yield item
                except BaseException as error:
                    if otel_span is not None and not isinstance(error, GeneratorExit):
                        _fail(otel_span, error)
                    raise
                finally:
                    await generator.aclose()
                    finish(otel_span, items)
            return async_generator

        if inspect.isgeneratorfunction(function):
            @functools.wraps(function)
            def generator_wrapper(*args, **kwargs):
                otel_span = begin(args, kwargs)
                items: list = []
                generator = function(*args, **kwargs)
                try:
                    sent = None
                    while True:
                        token = enter(otel_span)
                        try:
                            item = generator.send(sent)
                        except StopIteration as stop:
                            if stop.value is not None:
                                items.append(stop.value)
                            break
                        finally:
                            _detach(token)
                        if len(items) < MAX_YIELDED_ITEMS:
                            items.append(item)
                        sent = yield item
                except BaseException as error:
                    if otel_span is not None and not isinstance(error, GeneratorExit):
                        _fail(otel_span, error)
                    raise
                finally:
                    generator.close()
                    finish(otel_span, items)
            return generator_wrapper

        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def coroutine(*args, **kwargs):
                otel_span = begin(args, kwargs)
                token = enter(otel_span)
                try:
                    output = await function(*args, **kwargs)
                except BaseException as error:
                    if otel_span is not None:
                        _fail(otel_span, error)
                    _detach(token)
                    _end(otel_span)
                    raise
                _detach(token)
                finish(otel_span, output)
                return output
            return coroutine

        @functools.wraps(function)
        def call(*args, **kwargs):
            otel_span = begin(args, kwargs)
            token = enter(otel_span)
            try:
                output = function(*args, **kwargs)
            except BaseException as error:
                if otel_span is not None:
                    _fail(otel_span, error)
                _detach(token)
                _end(otel_span)
                raise
            _detach(token)
            finish(otel_span, output)
            return output
        return call

    return decorate


class TraceFields(SpanProcessor):
    """Trace-level fields set with `set_trace()`, copied onto every span of that trace started
    after it (below it, in other threads, and the instrumentors' LLM spans): the platform
    applies them to the whole trace, and each span then carries them too."""

    MAX_TRACES = 10_000

    def __init__(self) -> None:
        self._by_trace: OrderedDict[int, dict] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, trace_id: int, attributes: dict) -> None:
        with self._lock:
            self._by_trace[trace_id] = {**self._by_trace.get(trace_id, {}), **attributes}
            self._by_trace.move_to_end(trace_id)
            while len(self._by_trace) > self.MAX_TRACES:
                self._by_trace.popitem(last=False)

    def on_start(self, span, parent_context=None) -> None:
        try:
            with self._lock:
                attributes = self._by_trace.get(span.context.trace_id)
            if attributes:
                span.set_attributes(attributes)
        except Exception:
            _guard("copying trace fields")


trace_fields = TraceFields()


def set_trace(*, user_id: str | None = None, session_id: str | None = None,
              tags: list[str] | None = None, metadata: dict | None = None) -> None:
    """Set the trace's user, session, tags and metadata on the current span and on every span
    of its trace started after this call."""
    try:
        attributes: dict[str, Any] = {}
        if user_id is not None:
            attributes["user.id"] = str(user_id)
        if session_id is not None:
            attributes["session.id"] = str(session_id)
        if tags is not None:
            attributes["tag.tags"] = [str(tag) for tag in tags]
        if metadata is not None:
            attributes["metadata"] = to_json(metadata)
        current = trace.get_current_span()
        context = current.get_span_context()
        if not context.is_valid:
            log.warning("llmops_sdk: set_trace() outside any span does nothing")
            return
        current.set_attributes(attributes)
        trace_fields.remember(context.trace_id, attributes)
    except Exception:
        _guard("set_trace()")


def current_ids() -> tuple[str, str]:
    """The current trace id and span id, in hex as the platform stores them ('' outside)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
