# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The OTLP protobuf door's compiled reader: an ExportTraceServiceRequest's wire format read
directly (varints, length-delimited fields, KeyValue/AnyValue) into the span dicts
accept_spans takes, through the alias table of ingestion.otlp.mapping.

Two levels of fallback to the Python reference (ingestion.otlp.decode + mapping.map_span),
so every answer is the reference's:
- a span whose attributes need more than the alias table (events; Langfuse, Traceloop or
  flattened-message keys; a key set twice; a key its resource also sets) is decoded here
  into an OtlpSpan and mapped by map_span;
- a request this reader does not read exactly as protobuf would (malformed, a wire type it
  does not expect, invalid UTF-8, groups) raises Fallback: the caller runs the reference on
  the whole body, which gives the documented 400 when protobuf refuses it.
`make ext` builds it; SOURCE_HASH (set by the build) lets ingestion.otlp.reader refuse a
build of another version of this file.
"""

from cpython.buffer cimport PyBUF_READ
from cpython.datetime cimport datetime_new, import_datetime
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

import sys

import orjson

from ingestion.otlp import mapping as _m

import_datetime()

include "_wire_hash.pxi"  # SOURCE_HASH, written by scripts/build_ext.py


class Fallback(Exception):
    """Read this request with the Python reference instead."""


cdef object _UTC = _m.EPOCH.tzinfo
cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError
cdef object _scalar = _m.scalar
cdef object _as_int = _m.as_int
cdef object _as_float = _m.as_float
cdef object _tags_of = _m.tags_of
cdef object _map_span = _m.map_span
cdef object _OtlpSpan = _m.OtlpSpan
cdef object _OtlpEvent = _m.OtlpEvent
cdef object _Scope = _m.Scope
cdef object _GENAI_OPERATIONS = _m.GENAI_OPERATIONS
cdef object _OPENINFERENCE_KINDS = _m.OPENINFERENCE_KINDS
cdef object _TRACELOOP_KINDS = _m.TRACELOOP_KINDS
cdef tuple _SPAN_KINDS = tuple(_m.OTEL_SPAN_KINDS)
cdef str _SPAN_KIND_KEY = _m.SPAN_KIND_KEY
cdef str _ATTRIBUTE_PREFIX = _m.ATTRIBUTE_PREFIX
cdef tuple _CONSUMED_PREFIXES = tuple(p.encode() for p in _m.CONSUMED_PREFIXES) + (
    b"traceloop.", b"langfuse.")

# -- the key table: every key the fast path reads, matched on bytes, no str made ----------

cdef enum: NFIELDS = 14
# Alias fields, in this order (ranks from mapping.ALIASES).
cdef tuple FIELDS = ("model", "provider", "session_id", "user_id", "tags", "environment",
                     "cost", "input_tokens", "output_tokens", "cached_input_tokens",
                     "cache_write_tokens", "total_tokens", "input", "output")
cdef enum: F_MODEL = 0
cdef enum: F_PROVIDER = 1
cdef enum: F_SESSION = 2
cdef enum: F_USER = 3
cdef enum: F_TAGS = 4
cdef enum: F_ENV = 5
cdef enum: F_COST = 6
cdef enum: F_IN = 7
cdef enum: F_OUT = 8
cdef enum: F_CACHED = 9
cdef enum: F_WRITE = 10
cdef enum: F_TOTAL = 11
cdef enum: F_INPUT = 12
cdef enum: F_OUTPUT = 13
# Other keys the fast path reads (codes past the aliases).
cdef tuple SPECIALS = ("gen_ai.operation.name", "openinference.span.kind",
                       "traceloop.span.kind", "gen_ai.system_instructions", "input.mime_type",
                       "output.mime_type", "metadata", "error.type", "gen_ai.tool.name")
cdef enum: S_OPERATION = 0
cdef enum: S_OI_KIND = 1
cdef enum: S_TL_KIND = 2
cdef enum: S_INSTRUCTIONS = 3
cdef enum: S_IN_MIME = 4
cdef enum: S_OUT_MIME = 5
cdef enum: S_METADATA = 6
cdef enum: S_ERROR = 7
cdef enum: S_TOOL = 8
cdef enum: NSPECIALS = 9
cdef enum: MAXKEYS = 128
cdef enum: TABLE = 512  # open addressing, a power of two over twice the keys

cdef const char* _key_ptr[MAXKEYS]
cdef Py_ssize_t _key_len[MAXKEYS]
cdef list _KEY_BYTES = []  # keeps _key_ptr's bytes alive
cdef list _KEY_STR = []
cdef int _key_field[MAXKEYS]  # alias field, or -1
cdef int _key_rank[MAXKEYS]
cdef int _key_special[MAXKEYS]  # special index, or -1
cdef int _nkeys = 0
cdef int _slots[TABLE]


cdef inline uint32_t _hash(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Length, the first and the last 8 bytes: enough to tell the table's keys apart."""
    cdef uint64_t head = 0, tail = 0
    cdef Py_ssize_t i
    if n >= 8:
        memcpy(&head, p, 8)
        memcpy(&tail, p + n - 8, 8)
    else:
        for i in range(n):
            head = (head << 8) | p[i]
    head = (head ^ (tail * 0x9E3779B97F4A7C15ULL) ^ <uint64_t>n) * 0xFF51AFD7ED558CCDULL
    return <uint32_t>(head >> 32)


cdef void _add_key(str key, int field, int rank, int special):
    global _nkeys
    cdef bytes raw = key.encode()
    cdef uint32_t h = _hash(<const uint8_t*>raw, len(raw)) & (TABLE - 1)
    while _slots[h] >= 0:
        h = (h + 1) & (TABLE - 1)
    _slots[h] = _nkeys
    _KEY_BYTES.append(raw)
    _KEY_STR.append(key)
    _key_ptr[_nkeys] = raw
    _key_len[_nkeys] = len(raw)
    _key_field[_nkeys] = field
    _key_rank[_nkeys] = rank
    _key_special[_nkeys] = special
    _nkeys += 1


cdef inline int _lookup(const uint8_t* p, Py_ssize_t n) noexcept:
    cdef uint32_t h = _hash(p, n) & (TABLE - 1)
    cdef int code
    while True:
        code = _slots[h]
        if code < 0:
            return -1
        if _key_len[code] == n and memcmp(_key_ptr[code], p, n) == 0:
            return code
        h = (h + 1) & (TABLE - 1)


def _build_table() -> None:
    cdef int i
    for i in range(TABLE):
        _slots[i] = -1
    for key, (name, rank) in _m.ALIASES.items():
        _add_key(key, FIELDS.index(name), rank, -1)
    for i, key in enumerate(SPECIALS):
        _add_key(key, -1, 0, i)
    assert _nkeys <= MAXKEYS
    # Every key map_span consumes whole is in the table: none ends up in metadata here.
    assert _m.CONSUMED_KEYS <= set(_KEY_STR), _m.CONSUMED_KEYS - set(_KEY_STR)
    assert sys.byteorder == "little"  # fixed64 read with memcpy


_build_table()


# -- wire primitives ------------------------------------------------------------------------

cdef struct Cursor:
    const uint8_t* p
    const uint8_t* end


cdef inline uint64_t _varint(Cursor* c) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint8_t byte
    if c.p < c.end and c.p[0] < 0x80:
        byte = c.p[0]
        c.p += 1
        return byte
    return _long_varint(c)


cdef uint64_t _long_varint(Cursor* c) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef uint8_t byte
    while True:
        if c.p >= c.end or shift > 63:
            raise Fallback("truncated varint")
        byte = c.p[0]
        c.p += 1
        if shift == 63 and byte > 1:
            raise Fallback("varint over 64 bits")
        result |= (<uint64_t>(byte & 0x7F)) << shift
        if byte < 0x80:
            return result
        shift += 7


cdef inline uint64_t _fixed64(Cursor* c) except? 0xFFFFFFFFFFFFFFFF:
    cdef uint64_t value
    if c.end - c.p < 8:
        raise Fallback("truncated fixed64")
    memcpy(&value, c.p, 8)  # little-endian hosts only (checked at import)
    c.p += 8
    return value


cdef inline int _sub(Cursor* c, Cursor* out) except -1:
    """The next length-delimited payload as its own cursor."""
    cdef uint64_t n = _varint(c)
    if n > <uint64_t>(c.end - c.p):
        raise Fallback("length past the end")
    out.p = c.p
    out.end = c.p + n
    c.p += n
    return 0


cdef inline int _skip(Cursor* c, int wire) except -1:
    cdef Cursor ignored
    if wire == 0:
        _varint(c)
    elif wire == 1:
        if c.end - c.p < 8:
            raise Fallback("truncated")
        c.p += 8
    elif wire == 2:
        _sub(c, &ignored)
    elif wire == 5:
        if c.end - c.p < 4:
            raise Fallback("truncated")
        c.p += 4
    else:
        raise Fallback("group or bad wire type")
    return 0


cdef inline str _text(Cursor* c):
    try:
        return PyUnicode_DecodeUTF8(<const char*>c.p, c.end - c.p, NULL)
    except UnicodeDecodeError:
        raise Fallback("invalid UTF-8")


cdef inline void _expect(int wire, int wanted) except *:
    if wire != wanted:
        raise Fallback("unexpected wire type")


cdef object _any_value(Cursor* c, int depth=0):
    """An AnyValue as the reference reads it: the last value field set wins (a oneof)."""
    cdef object value = None
    cdef uint64_t tag, raw
    cdef int field, wire, current = 0
    cdef double number
    cdef Cursor sub
    if depth > 90:  # protobuf refuses nesting past 100 messages: the reference's 400
        raise Fallback("nested too deeply")
    while c.p < c.end:
        tag = _varint(c)
        field, wire = tag >> 3, tag & 7
        if (field == 5 or field == 6) and current == field:
            raise Fallback("a value message twice: merged by protobuf")
        if 1 <= field <= 7:
            current = field
        if field == 1:
            _expect(wire, 2)
            _sub(c, &sub)
            value = _text(&sub)
        elif field == 2:
            _expect(wire, 0)
            value = _varint(c) != 0
        elif field == 3:
            _expect(wire, 0)
            value = <int64_t>_varint(c)
        elif field == 4:
            _expect(wire, 1)
            raw = _fixed64(c)
            memcpy(&number, &raw, 8)
            value = number
        elif field == 5:
            _expect(wire, 2)
            _sub(c, &sub)
            value = _array(&sub, depth + 1)
        elif field == 6:
            _expect(wire, 2)
            _sub(c, &sub)
            value = _kvlist(&sub, depth + 1)
        elif field == 7:
            _expect(wire, 2)
            _sub(c, &sub)
            value = (<const char*>sub.p)[:sub.end - sub.p]
        else:
            _skip(c, wire)
    return value


cdef list _array(Cursor* c, int depth):
    cdef list items = []
    cdef uint64_t tag
    cdef Cursor sub
    while c.p < c.end:
        tag = _varint(c)
        if tag == 0x0A:
            _sub(c, &sub)
            items.append(_any_value(&sub, depth + 1))
        else:
            _skip(c, tag & 7)
    return items


cdef inline int _key_value(Cursor* entry, Cursor* key, Cursor* value) except -1:
    """A KeyValue's key and serialized value (empty when absent); the last of each wins.
    `entry` is left as it is (read again when a span takes the slow way)."""
    cdef Cursor copy = entry[0]
    cdef Cursor* c = &copy
    cdef uint64_t tag
    cdef int values = 0
    key.p = key.end = value.p = value.end = c.p
    while c.p < c.end:
        tag = _varint(c)
        if tag == 0x0A:
            _sub(c, key)
        elif tag == 0x12:
            _sub(c, value)
            values += 1
        else:
            if tag >> 3 in (1, 2):
                raise Fallback("unexpected wire type")
            _skip(c, tag & 7)
    return values


cdef dict _kvlist(Cursor* c, int depth):
    """A KeyValueList (or an attribute list's entries) as a dict; a repeated key: the last."""
    cdef dict items = {}
    cdef uint64_t tag
    cdef Cursor entry, key, value
    while c.p < c.end:
        tag = _varint(c)
        if tag == 0x0A:
            _sub(c, &entry)
            if _key_value(&entry, &key, &value) > 1:
                raise Fallback("a KeyValue's value twice: merged by protobuf")
            items[_text(&key)] = _any_value(&value, depth + 1)
        else:
            _skip(c, tag & 7)
    return items


cdef const char* _HEXC = b"0123456789abcdef"


cdef inline str _hex(Cursor* c):
    cdef Py_ssize_t n = c.end - c.p, i
    cdef char buffer[64]
    if n > 32:
        return (<const char*>c.p)[:n].hex()
    for i in range(n):
        buffer[2 * i] = _HEXC[c.p[i] >> 4]
        buffer[2 * i + 1] = _HEXC[c.p[i] & 15]
    return PyUnicode_DecodeASCII(buffer, 2 * n, NULL)


cdef inline bint _all_zero(Cursor* c) noexcept:
    cdef const uint8_t* p = c.p
    while p < c.end:
        if p[0]:
            return False
        p += 1
    return True


cdef int64_t _DAY_US = 86400000000LL
cdef int64_t _HOUR_US = 3600000000LL


cdef object _time(uint64_t nanos):
    """mapping.time_of without the timedelta: the UTC calendar from Unix microseconds."""
    cdef int64_t micros = <int64_t>(nanos // 1000)
    cdef int64_t days = micros // _DAY_US
    cdef int64_t rest = micros - days * _DAY_US
    # Howard Hinnant's civil_from_days (days since 1970-01-01, non-negative here).
    cdef int64_t z = days + 719468
    cdef int64_t era = z // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t y = yoe + era * 400
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t d = doy - (153 * mp + 2) // 5 + 1
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return datetime_new(y, m, d, rest // _HOUR_US, rest // 60000000 % 60,
                        rest // 1000000 % 60, rest % 1000000, _UTC)


cdef str _cut(str text, Py_ssize_t limit):
    if len(text) <= limit:
        return text
    return text[:limit] + f" [truncated by llmops: {len(text)} characters]"


cdef object _json_or_text(object value):
    cdef str text
    if type(value) is memoryview:
        try:
            return _loads(value)
        except _JSONDecodeError:
            try:
                return (<memoryview>value).tobytes().decode()
            except UnicodeDecodeError:
                raise Fallback("invalid UTF-8")
    if type(value) is str:
        text = <str>value
        if text and text[0] in '{["':
            try:
                return _loads(text)
            except _JSONDecodeError:
                return value
    return value


cdef inline object _scalar_of(object value):
    if value is None or type(value) is str or type(value) is int or type(value) is float \
            or type(value) is bool:
        return value
    return _scalar(value)


cdef object _json_any_value(Cursor* c):
    """An AnyValue that json_or_text reads next: a string that may be JSON as a memoryview
    on the body (orjson parses it without a str made first; see _json_or_text), anything
    else as _any_value reads it. Never leaves read(): the body is not kept alive by it."""
    cdef Cursor probe = c[0], payload
    cdef uint64_t tag
    if probe.p < probe.end and probe.p[0] == 0x0A:
        probe.p += 1
        _sub(&probe, &payload)
        if probe.p == probe.end and payload.p < payload.end and (
                payload.p[0] == b"{"[0] or payload.p[0] == b"["[0] or
                payload.p[0] == b'"'[0]):
            return PyMemoryView_FromMemory(<char*>payload.p, payload.end - payload.p,
                                           PyBUF_READ)
    return _any_value(c)


cdef object _int_of(object value):
    if type(value) is int:
        return value
    return _as_int(value)


# -- resources and scopes -------------------------------------------------------------------

cdef class _ScopeState:
    """A scope's Scope object and what its resource gives every span's alias slots."""
    cdef object scope
    cdef dict resource_metadata
    cdef bint fast  # the resource holds no key the fast path cannot merge
    cdef int rank[NFIELDS]
    cdef list value
    cdef list key
    cdef uint64_t codes[2]  # the table's keys the resource sets: a span setting one falls back


cdef _ScopeState _scope_state(dict resource, str name, str version):
    cdef _ScopeState state = _ScopeState()
    cdef int i, code, field
    cdef bytes raw
    state.scope = _Scope(resource, name, version)
    state.resource_metadata = state.scope.resource_metadata
    state.fast = True
    state.value = [None] * NFIELDS
    state.key = [""] * NFIELDS
    for i in range(NFIELDS):
        state.rank[i] = 99
    state.codes[0] = state.codes[1] = 0
    for key, value in resource.items():
        raw = key.encode()
        code = _lookup(<const uint8_t*>raw, len(raw))
        if code < 0:
            if raw.startswith(_CONSUMED_PREFIXES):
                state.fast = False
            continue
        field = _key_field[code]
        if field < 0:
            state.fast = False
            continue
        state.codes[code >> 6] |= (<uint64_t>1) << (code & 63)
        if value is None or value == "":
            continue
        if _key_rank[code] < state.rank[field]:
            state.rank[field] = _key_rank[code]
            state.value[field] = value
            state.key[field] = key
    return state


cdef dict _resource(Cursor* c):
    cdef dict attributes = {}
    cdef uint64_t tag
    cdef Cursor entry, key, value
    while c.p < c.end:
        tag = _varint(c)
        if tag == 0x0A:  # attributes
            _sub(c, &entry)
            _key_value(&entry, &key, &value)
            attributes[_text(&key)] = _any_value(&value)
        else:
            if tag >> 3 == 1:
                raise Fallback("unexpected wire type")
            _skip(c, tag & 7)
    return attributes


cdef tuple _scope_names(Cursor* c):
    cdef str name = "", version = ""
    cdef uint64_t tag
    cdef Cursor sub
    while c.p < c.end:
        tag = _varint(c)
        if tag == 0x0A:
            _sub(c, &sub)
            name = _text(&sub)
        elif tag == 0x12:
            _sub(c, &sub)
            version = _text(&sub)
        else:
            if tag >> 3 in (1, 2):
                raise Fallback("unexpected wire type")
            _skip(c, tag & 7)
    return name, version


# -- spans ----------------------------------------------------------------------------------

cdef class _Reader:
    cdef int max_events_bytes
    cdef Py_ssize_t max_chars
    cdef public int count
    cdef public list refused
    cdef public list spans
    cdef object Refused
    cdef list values, keys, specials

    def __init__(self, int max_events_bytes, Py_ssize_t max_chars, Refused):
        self.max_events_bytes = max_events_bytes
        self.max_chars = max_chars
        self.count = 0
        self.refused = []
        self.spans = []
        self.Refused = Refused
        self.values, self.keys = [None] * NFIELDS, [None] * NFIELDS
        self.specials = [None] * NSPECIALS

    cdef int read(self, Cursor* c) except -1:
        cdef uint64_t tag
        cdef Cursor sub
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x0A:  # resource_spans
                _sub(c, &sub)
                self.resource_spans(&sub)
            else:
                if tag >> 3 == 1:
                    raise Fallback("unexpected wire type")
                _skip(c, tag & 7)
        return 0

    cdef int resource_spans(self, Cursor* c) except -1:
        # The resource may follow its scopes on the wire: find it first.
        cdef Cursor start = c[0], sub, found
        cdef uint64_t tag
        cdef dict resource = {}
        found.p = found.end = NULL
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x0A:
                if found.p != NULL:
                    raise Fallback("resource twice: merged by protobuf")
                _sub(c, &found)
            elif tag >> 3 in (1, 2) and tag & 7 != 2:
                raise Fallback("unexpected wire type")
            else:
                _skip(c, tag & 7)
        if found.p != NULL:
            resource = _resource(&found)
        c[0] = start
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x12:
                _sub(c, &sub)
                self.scope_spans(&sub, resource)
            else:
                _skip(c, tag & 7)
        return 0

    cdef int scope_spans(self, Cursor* c, dict resource) except -1:
        cdef Cursor start = c[0], sub
        cdef uint64_t tag
        cdef str name = "", version = ""
        cdef _ScopeState state = None
        cdef bint named = False
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x0A:
                if named:
                    raise Fallback("scope twice: merged by protobuf")
                named = True
                _sub(c, &sub)
                name, version = _scope_names(&sub)
            elif tag >> 3 in (1, 2) and tag & 7 != 2:
                raise Fallback("unexpected wire type")
            else:
                _skip(c, tag & 7)
        c[0] = start
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x12:
                if state is None:
                    state = _scope_state(resource, name, version)
                _sub(c, &sub)
                self.span(&sub, state)
            else:
                _skip(c, tag & 7)
        return 0

    cdef int span(self, Cursor* c, _ScopeState state) except -1:
        cdef Cursor trace_id, span_id, parent, name, sub, status, entry, key, value
        cdef Cursor attributes[256]
        cdef int nattributes = 0, kind = 0, status_code = 0, code
        cdef uint64_t tag, start_ns = 0, end_ns = 0
        cdef bint has_events = False, slow = not state.fast
        cdef list events_at = None
        cdef str status_message = ""
        cdef object problem
        cdef int nstatus = 0
        trace_id.p = trace_id.end = span_id.p = span_id.end = c.p
        parent.p = parent.end = name.p = name.end = c.p
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x0A:
                _sub(c, &trace_id)
            elif tag == 0x12:
                _sub(c, &span_id)
            elif tag == 0x22:
                _sub(c, &parent)
            elif tag == 0x2A:
                _sub(c, &name)
            elif tag == 0x30:
                kind = <int>(<int64_t>_varint(c))
            elif tag == 0x39:
                start_ns = _fixed64(c)
            elif tag == 0x41:
                end_ns = _fixed64(c)
            elif tag == 0x4A:
                if nattributes == 256:
                    raise Fallback("over 256 attributes")
                _sub(c, &attributes[nattributes])
                nattributes += 1
            elif tag == 0x5A:
                _sub(c, &sub)
                if events_at is None:
                    events_at = []
                events_at.append((<const char*>sub.p)[:sub.end - sub.p])
            elif tag == 0x7A:
                _sub(c, &status)
                nstatus += 1
                if nstatus > 1:
                    raise Fallback("status twice: merged by protobuf")
                status_message, status_code = self.status(&status)
            else:
                if tag >> 3 in (1, 2, 4, 5, 6, 7, 8, 9, 11, 15):
                    raise Fallback("unexpected wire type")
                _skip(c, tag & 7)
        position = self.count
        self.count += 1
        problem = None
        if trace_id.end - trace_id.p != 16 or _all_zero(&trace_id):
            problem = "traceId missing or invalid: 16 bytes (32 hex characters), not all zero"
        elif span_id.end - span_id.p != 8 or _all_zero(&span_id):
            problem = "spanId missing or invalid: 8 bytes (16 hex characters), not all zero"
        elif not start_ns:
            problem = "startTimeUnixNano missing"
        if problem is not None:
            hex_id = _hex(&span_id)
            # The reference decodes every attribute before refusing: the same 400s.
            for code in range(nattributes):
                _key_value(&attributes[code], &key, &value)
                _text(&key)
                _any_value(&value)
            self.refused.append(self.Refused(position, hex_id or None, problem))
            return 0
        if events_at is not None:
            slow = True
        if not slow:
            slow = self.fast_span(state, attributes, nattributes, &trace_id, &span_id,
                                  &parent, &name, kind, start_ns, end_ns, status_code,
                                  status_message)
        if slow:
            self.slow_span(state, attributes, nattributes, events_at, &trace_id, &span_id,
                           &parent, &name, kind, start_ns, end_ns, status_code,
                           status_message)
        return 0

    cdef tuple status(self, Cursor* c):
        cdef str message = ""
        cdef int code = 0
        cdef uint64_t tag
        cdef Cursor sub
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x12:
                _sub(c, &sub)
                message = _text(&sub)
            elif tag == 0x18:
                code = <int>(<int64_t>_varint(c))
            else:
                if tag >> 3 in (2, 3):
                    raise Fallback("unexpected wire type")
                _skip(c, tag & 7)
        return message, code

    cdef int slow_span(self, _ScopeState state, Cursor* attributes, int nattributes,
                       list events_at, Cursor* trace_id, Cursor* span_id, Cursor* parent,
                       Cursor* name, int kind, uint64_t start_ns, uint64_t end_ns,
                       int status_code, str status_message) except -1:
        """Decoded here, mapped by the reference's map_span."""
        cdef dict own = {}
        cdef list events = []
        cdef int i
        cdef Cursor key, value, sub
        cdef bytes raw
        for i in range(nattributes):
            _key_value(&attributes[i], &key, &value)
            own[_text(&key)] = _any_value(&value)
        for raw in events_at or ():
            sub.p = <const uint8_t*><const char*>raw
            sub.end = sub.p + len(raw)
            events.append(self.event(&sub))
        span = _OtlpSpan(_hex(trace_id), _hex(span_id), _text(name), start_ns, _hex(parent),
                         kind, end_ns, status_code, status_message, own, events)
        self.spans.append(_map_span(span, state.scope, max_events_bytes=self.max_events_bytes,
                                    max_attribute_chars=self.max_chars))
        return 0

    cdef object event(self, Cursor* c):
        cdef uint64_t tag, time_ns = 0
        cdef str name = ""
        cdef dict attributes = {}
        cdef Cursor sub, key, value
        while c.p < c.end:
            tag = _varint(c)
            if tag == 0x09:
                time_ns = _fixed64(c)
            elif tag == 0x12:
                _sub(c, &sub)
                name = _text(&sub)
            elif tag == 0x1A:
                _sub(c, &sub)
                _key_value(&sub, &key, &value)
                attributes[_text(&key)] = _any_value(&value)
            else:
                if tag >> 3 in (1, 2, 3):
                    raise Fallback("unexpected wire type")
                _skip(c, tag & 7)
        return _OtlpEvent(name, time_ns, attributes)

    cdef int fast_span(self, _ScopeState state, Cursor* attributes, int nattributes,
                       Cursor* trace_id, Cursor* span_id, Cursor* parent, Cursor* name,
                       int kind, uint64_t start_ns, uint64_t end_ns, int status_code,
                       str status_message) except -1:
        """map_span for a span whose attributes the key table covers; 1: not covered,
        nothing done (the caller maps it the slow way)."""
        cdef int rank[NFIELDS]
        # Scratch lists of the reader, reset here: no three lists made per span.
        cdef list values = self.values, keys = self.keys, specials = self.specials
        cdef int i, code, field
        cdef uint64_t seen[2]
        cdef Cursor key, value
        cdef list unknown = None
        cdef object read, value_, whole, tool, error_type
        cdef str our_kind, span_name, status, model
        cdef dict metadata, ours, usage
        seen[0], seen[1] = state.codes[0], state.codes[1]
        for i in range(NFIELDS):
            rank[i] = state.rank[i]
            values[i] = state.value[i]
            keys[i] = state.key[i]
        for i in range(NSPECIALS):
            specials[i] = None
        for i in range(nattributes):
            _key_value(&attributes[i], &key, &value)
            code = _lookup(key.p, key.end - key.p)
            if code < 0:
                if (<const char*>key.p)[:key.end - key.p].startswith(_CONSUMED_PREFIXES):
                    return 1
                if unknown is None:
                    unknown = []
                unknown.append((_text(&key), _any_value(&value)))
                continue
            if seen[code >> 6] & ((<uint64_t>1) << (code & 63)):
                return 1  # set twice, or by the resource too
            seen[code >> 6] |= (<uint64_t>1) << (code & 63)
            field = _key_field[code]
            if field == F_INPUT or field == F_OUTPUT or (field < 0 and (
                    _key_special[code] == S_METADATA or
                    _key_special[code] == S_INSTRUCTIONS)):
                read = _json_any_value(&value)
            else:
                read = _any_value(&value)
            if field < 0:
                specials[_key_special[code]] = read
            elif read is not None and not (type(read) is str and not read) and \
                    _key_rank[code] < rank[field]:
                rank[field] = _key_rank[code]
                values[field] = read
                keys[field] = _KEY_STR[code]
            elif type(read) is memoryview:
                _json_or_text(read)  # not used, but read as the reference reads it

        model = "" if values[F_MODEL] is None else str(values[F_MODEL])
        # kind_of, without Langfuse's type (its keys take the slow way)
        value_ = specials[S_OPERATION]
        if type(value_) is str and (<str>value_).lower() in _GENAI_OPERATIONS:
            our_kind = _GENAI_OPERATIONS[(<str>value_).lower()]
        else:
            value_ = specials[S_OI_KIND]
            if type(value_) is str and value_:
                our_kind = _OPENINFERENCE_KINDS.get((<str>value_).upper(), "other")
            else:
                value_ = specials[S_TL_KIND]
                if type(value_) is str and (<str>value_).lower() in _TRACELOOP_KINDS:
                    our_kind = _TRACELOOP_KINDS[(<str>value_).lower()]
                else:
                    our_kind = "llm" if model else "other"
        span_name = _text(name)
        tool = specials[S_TOOL]
        if our_kind == "tool" and type(tool) is str:
            span_name = tool or span_name

        status = "ok"
        error_type = specials[S_ERROR]
        if status_code == 2:
            status = "error"
            status_message = status_message or str(error_type or "")
        elif error_type:
            status, status_message = "error", str(error_type)
        else:
            status_message = ""  # a message without an error status is not kept

        metadata = state.resource_metadata.copy()
        if kind:
            metadata[_SPAN_KIND_KEY] = _SPAN_KINDS[kind] if 0 <= kind < 6 else kind
        if unknown is not None:
            for key_text, read in unknown:
                if type(read) is str:
                    metadata[_ATTRIBUTE_PREFIX + key_text] = _cut(read, self.max_chars)
                elif read is None or type(read) is int or type(read) is float or \
                        type(read) is bool:
                    metadata[_ATTRIBUTE_PREFIX + key_text] = read
                else:
                    read = _scalar(read)
                    metadata[_ATTRIBUTE_PREFIX + key_text] = (
                        _cut(read, self.max_chars) if type(read) is str else read)
        whole = specials[S_METADATA]
        if whole is not None:
            whole = _json_or_text(whole)
            if type(whole) is dict:
                for meta_key, meta_value in (<dict>whole).items():
                    metadata[meta_key] = _scalar_of(meta_value)

        ours = {
            "trace_id": _hex(trace_id),
            "span_id": _hex(span_id),
            "parent_span_id": _hex(parent) or None,
            "name": span_name,
            "kind": our_kind,
            "start_time": _time(start_ns),
            "end_time": _time(end_ns) if end_ns else None,
            "status": status,
            "status_message": status_message,
            "model": model,
            "metadata": metadata,
        }
        for field, out in ((F_PROVIDER, "provider"), (F_SESSION, "session_id"),
                           (F_USER, "user_id"), (F_ENV, "environment")):
            if values[field] is not None:
                ours[out] = str(values[field])
        content = self.content(values[F_INPUT], keys[F_INPUT], specials)
        if content is not None:
            ours["input"] = content
        content = self.content(values[F_OUTPUT], keys[F_OUTPUT], specials)
        if content is not None:
            ours["output"] = content
        # usage_of without Langfuse's usage_details
        input_tokens = _int_of(values[F_IN]) if values[F_IN] is not None else None
        output_tokens = _int_of(values[F_OUT]) if values[F_OUT] is not None else None
        cached = _int_of(values[F_CACHED]) if values[F_CACHED] is not None else None
        write = _int_of(values[F_WRITE]) if values[F_WRITE] is not None else None
        total = _int_of(values[F_TOTAL]) if values[F_TOTAL] is not None else None
        if input_tokens is None and (cached is not None or write is not None):
            input_tokens = (cached or 0) + (write or 0)
        if total is None and (input_tokens is not None or output_tokens is not None):
            total = (input_tokens or 0) + (output_tokens or 0)
        usage = {}
        if input_tokens is not None:
            usage["input_tokens"] = input_tokens
        if output_tokens is not None:
            usage["output_tokens"] = output_tokens
        if cached is not None:
            usage["cached_input_tokens"] = cached
        if write is not None:
            usage["cache_write_tokens"] = write
        if total is not None:
            usage["total_tokens"] = total
        if usage:
            ours["usage"] = usage
        if values[F_COST] is not None:
            cost = _as_float(values[F_COST])
            if cost is not None:
                ours["cost"] = cost
        if type(specials[S_INSTRUCTIONS]) is memoryview:
            _json_or_text(specials[S_INSTRUCTIONS])  # not used, but read as the reference does
        if values[F_TAGS] is not None:
            tags = values[F_TAGS]
            if type(tags) is list and all(type(tag) is str for tag in <list>tags):
                pass  # a fresh list, read for this span alone
            else:
                tags = _tags_of(tags)
            if tags:
                ours["tags"] = tags
        self.spans.append(ours)
        return 0

    cdef object content(self, object value, object key, list specials):
        """mapping._attribute_content for the alias picked (no events, no flat messages)."""
        if value is None:
            return None
        if key == "gen_ai.input.messages":
            messages = _json_or_text(value)
            instructions = specials[S_INSTRUCTIONS] = _json_or_text(specials[S_INSTRUCTIONS])
            if instructions is not None and type(messages) is list:
                return [{"role": "system", "parts": instructions}
                        if type(instructions) is list else
                        {"role": "system", "content": instructions}, *messages]
            return messages
        if key == "input.value" or key == "output.value":
            mime = specials[S_IN_MIME if key == "input.value" else S_OUT_MIME]
            if type(mime) is str and "json" in mime:
                return _json_or_text(value)
            if type(value) is memoryview:
                try:
                    return (<memoryview>value).tobytes().decode()
                except UnicodeDecodeError:
                    raise Fallback("invalid UTF-8")
            return value
        return _json_or_text(value)


def read(body, int max_events_bytes, Py_ssize_t max_attribute_chars, Refused) -> _Reader:
    """The request's spans mapped (reader.spans), refused (reader.refused) and counted
    (reader.count); raises Fallback when the reference must read it."""
    cdef const uint8_t[::1] view = body
    cdef Cursor c
    cdef _Reader reader = _Reader(max_events_bytes, max_attribute_chars, Refused)
    if view.shape[0] == 0:
        return reader
    c.p = &view[0]
    c.end = c.p + view.shape[0]
    reader.read(&c)
    return reader
