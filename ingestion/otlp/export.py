"""An OTLP export, decoded, through the mapping and the accept path of POST /api/v1/spans
(validation, sampling, degradation, quota, Kafka's ack): the same guarantee for both doors."""

from dataclasses import dataclass, field

from django.conf import settings

from ingestion.otlp import reader
from ingestion.otlp.decode import DecodedRequest, Refused, decode_protobuf
from ingestion.otlp.mapping import map_span
from ingestion.services.accept import accept_spans
from ingestion.services.tenancy import OrgContext


@dataclass
class MappedRequest:
    """A request's spans as accept_spans takes them, and the ones refused before mapping."""

    spans: list[dict] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    count: int = 0  # every span of the request, refused ones included


def _limits() -> tuple[int, int]:
    return settings.OTLP_MAX_EVENTS_BYTES, settings.OTLP_MAX_ATTRIBUTE_CHARS


def map_decoded(decoded: DecodedRequest) -> MappedRequest:
    """The Python reference: each decoded span through map_span."""
    events_bytes, attribute_chars = _limits()
    return MappedRequest([map_span(span, scope, max_events_bytes=events_bytes,
                                   max_attribute_chars=attribute_chars)
                          for scope, group in decoded.groups for _, span in group],
                         decoded.refused, decoded.count)


def read_protobuf(body: bytes) -> MappedRequest:
    """An ExportTraceServiceRequest read and mapped by the compiled reader when built (see
    ingestion.otlp.reader), else by the reference; the reference also reads any request the
    compiled one hands back (malformed ones: MalformedRequest, the 400)."""
    if reader.wire is not None:
        try:
            read = reader.wire.read(body, *_limits(), Refused)
        except reader.wire.Fallback:
            pass
        else:
            return MappedRequest(read.spans, read.refused, read.count)
    return map_decoded(decode_protobuf(body))


@dataclass
class ExportOutcome:
    accepted: int = 0
    rejected: int = 0
    # One line per refused or truncated span, naming it: the partial success message.
    problems: list[str] = field(default_factory=list)

    @property
    def error_message(self) -> str:
        return "; ".join(self.problems)


def _fields(errors: dict[str, str]) -> str:
    return ", ".join(f"{name}: {message}" for name, message in errors.items())


def export_spans(*, org: OrgContext, mapped: MappedRequest) -> ExportOutcome:
    """Map and accept every readable span; returns once Kafka acknowledged them. Raises what
    accept_spans raises (RateLimited, IngestionPaused, PublishFailed): nothing stored then."""
    outcome = ExportOutcome()
    for refused in mapped.refused:
        who = f"span {refused.span_id}" if refused.span_id else f"span #{refused.position}"
        outcome.problems.append(f"{who} refused: {refused.reason}")
    outcome.rejected = len(mapped.refused)
    spans = mapped.spans
    if not spans:
        return outcome
    result = accept_spans(org=org, spans=spans)
    for rejection in result.rejected:
        span_id = spans[rejection["index"]]["span_id"]
        outcome.problems.append(f"span {span_id} refused: {_fields(rejection['errors'])}")
    for cut in result.truncated:
        outcome.problems.append(
            f"span {cut['span_id']} stored with {' and '.join(cut['fields'])} truncated to "
            f"{settings.INGEST_MAX_CONTENT_BYTES} bytes (INGEST_MAX_CONTENT_BYTES)")
    outcome.rejected += len(result.rejected)
    outcome.accepted = result.accepted
    return outcome
