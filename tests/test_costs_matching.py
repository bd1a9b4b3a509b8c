"""Which price a span gets: the matching cases users trip over, on the synced package prices."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from genai_prices import Usage, calc_price

from costs.models import Price
from costs.services.pricing import price_for
from costs.services.sync import sync_prices
from costs.services.tokens import TokenUsage
from tests.ingest_helpers import BASE_TIME, days_ago

AT = BASE_TIME

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module", autouse=True)
def synced_prices(django_db_setup, django_db_blocker):
    """The package's prices, committed once for this module, removed after it."""
    with django_db_blocker.unblock():
        sync_prices()
        yield
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {Price._meta.db_table}")


# (case, model as sent, provider as sent) -> (provider, package model id) of the price used.
MATCHING = [
    ("base model", "gpt-4o", "", "openai", "gpt-4o"),
    ("dated snapshot -> its base model", "gpt-4o-2024-08-06", "openai", "openai", "gpt-4o"),
    ("a snapshot priced on its own", "gpt-4o-2024-05-13", "", "openai", "gpt-4o-2024-05-13"),
    ("mini is not the full model", "gpt-4o-mini", "", "openai", "gpt-4o-mini"),
    ("mini's snapshot -> mini", "gpt-4o-mini-2024-07-18", "", "openai", "gpt-4o-mini"),
    ("full is not mini", "gpt-4.1", "", "openai", "gpt-4.1"),
    ("nano", "gpt-4.1-nano", "", "openai", "gpt-4.1-nano"),
    ("case and provider spelling", "GPT-4o-Mini", "OpenAI", "openai", "gpt-4o-mini"),
    ("Anthropic's dated snapshot", "claude-3-5-sonnet-20241022", "", "anthropic",
     "claude-3-5-sonnet"),
    ("a dot for the dash", "claude-3.5-sonnet", "anthropic", "anthropic", "claude-3-5-sonnet"),
    ("haiku is not sonnet", "claude-3-5-haiku-20241022", "", "anthropic",
     "claude-3-5-haiku-latest"),
    ("Vertex's price for claude", "claude-3-5-sonnet-20241022", "vertex_ai", "google",
     "claude-3-5-sonnet"),
    ("Bedrock's name, provider 'bedrock'", "anthropic.claude-3-5-sonnet-20241022-v2:0",
     "bedrock", "aws", "regional.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("Bedrock's cross-region name", "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
     "Amazon Bedrock", "aws", "regional.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("LiteLLM's provider/model", "openai/gpt-4o-mini", "", "openai", "gpt-4o-mini"),
    ("OpenRouter's own name and price", "openai/gpt-4o", "openrouter", "openrouter",
     "openai/gpt-4o"),
    ("Azure without its own row falls back to OpenAI's", "gpt-4o", "azure", "openai",
     "gpt-4o"),
    ("Gemini's numbered version", "gemini-1.5-pro-002", "google", "google", "gemini-1.5-pro"),
    ("an embedding model", "text-embedding-3-small", "", "openai", "text-embedding-3-small"),
    ("an unknown model", "my-finetuned-llama", "", None, None),
    ("an unknown model at a known provider", "gpt-4o-my-finetune", "openai", None, None),
]


@pytest.mark.parametrize("case, model, provider, expected_provider, expected_model", MATCHING,
                         ids=[case[0] for case in MATCHING])
def test_matching_case(case, model, provider, expected_provider, expected_model):
    row = price_for(model=model, provider=provider, at=AT)
    if expected_provider is None:
        assert row is None
        return
    assert row is not None, f"{model!r} matched nothing"
    price = Price.objects.get(id=row.id)
    assert (price.provider, price.sync_key.split("/", 1)[1].rsplit("@", 1)[0]) == (
        expected_provider, expected_model)


def test_a_price_change_at_a_date_boundary_in_the_package():
    # OpenRouter raised gpt-4.1-nano's cached input price on 2026-11-03 (UTC midnight): a
    # date in the pinned package's data, not a stored span's, so it stays fixed.
    before = price_for(model="openai/gpt-4.1-nano", provider="openrouter",
                       at=datetime(2026, 11, 3, tzinfo=UTC) - timedelta(microseconds=1))
    after = price_for(model="openai/gpt-4.1-nano", provider="openrouter",
                      at=datetime(2026, 11, 3, tzinfo=UTC))
    assert (before.cached_input, after.cached_input) == (25_000, 30_000)  # micro-USD / M
    assert before.id != after.id


def test_an_operator_row_wins_from_its_date_on():
    midnight = days_ago(6)
    Price.objects.create(provider="openai", model_name="gpt-4o", model_pattern=r"gpt-4o",
                         input_price=Decimal("2"), output_price=Decimal("8"),
                         effective_from=midnight)
    synced = price_for(model="gpt-4o", provider="openai",
                       at=midnight - timedelta(microseconds=1))
    operator = price_for(model="gpt-4o", provider="openai", at=midnight)
    assert (synced.input, operator.input) == (2_500_000, 2_000_000)
    # Its snapshot keeps the package's price: the operator's pattern names gpt-4o only.
    assert price_for(model="gpt-4o-2024-11-20", provider="openai",
                     at=midnight + timedelta(days=1)).input == 2_500_000


@pytest.mark.parametrize("model, provider", [
    ("gpt-4o", "openai"), ("gpt-4o-mini-2024-07-18", "openai"), ("gpt-4o-2024-05-13", "openai"),
    ("claude-3-5-sonnet-20241022", "anthropic"), ("claude-3-5-haiku-latest", "anthropic"),
    ("gemini-2.0-flash", "google"), ("mistral-large-latest", "mistral"),
])
def test_costs_agree_with_the_genai_prices_package(model, provider):
    usage = TokenUsage(input_tokens=123_457, cached_input_tokens=23_456,
                       cache_write_tokens=1_001, output_tokens=9_876)
    theirs = calc_price(Usage(input_tokens=123_457, cache_read_tokens=23_456,
                              cache_write_tokens=1_001, output_tokens=9_876),
                        model, provider_id=provider, genai_request_timestamp=AT)
    assert price_for(model=model, provider=provider, at=AT).cost_of(usage) == theirs.total_price
