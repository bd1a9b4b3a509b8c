"""Which price applies to a span and what the span costs, exactly; prices cached per process."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from django.conf import settings

from costs.models import Price
from costs.services.tokens import TokenUsage, usage_of_span
from ingestion.schema import SpanIn
from llmops import changes

COST_EXPONENT = Decimal("1e-12")  # the spans table's Decimal64(12)
MICROS = 1_000_000


def _micros(price: Decimal | None, default: int = 0) -> int:
    # Prices have at most 6 decimals: in millionths of a dollar per million tokens they are
    # whole numbers, and a span's cost in 1e-12 USD is an exact integer sum.
    return default if price is None else int(price * MICROS)


@dataclass(frozen=True, slots=True)
class PriceRow:
    id: int
    provider: str
    pattern: re.Pattern
    input: int  # micro-USD per million tokens
    output: int
    cached_input: int
    cache_write: int
    effective_from: datetime | None
    effective_to: datetime | None
    priority: int

    @classmethod
    def of(cls, price: Price) -> "PriceRow":
        input_price = _micros(price.input_price)
        return cls(
            id=price.id, provider=price.provider.lower(),
            pattern=re.compile(price.model_pattern, re.IGNORECASE),
            input=input_price, output=_micros(price.output_price),
            # No separate cache price: those tokens are billed as input, never left unpriced.
            cached_input=_micros(price.cached_input_price, input_price),
            cache_write=_micros(price.cache_write_price, input_price),
            effective_from=price.effective_from, effective_to=price.effective_to,
            priority=price.priority,
        )

    def in_force(self, at: datetime) -> bool:
        return ((self.effective_from is None or self.effective_from <= at)
                and (self.effective_to is None or at < self.effective_to))

    def cost_of(self, usage: TokenUsage) -> Decimal:
        """Cached reads and cache writes at their own prices, the rest of the input at the input
        price, output at the output price; exact."""
        # Usage is validated at ingestion; max() only guards rows stored before that check.
        uncached = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
        micro_micros = (uncached * self.input + usage.cached_input_tokens * self.cached_input
                        + usage.cache_write_tokens * self.cache_write
                        + usage.output_tokens * self.output)
        return Decimal(f"{micro_micros}e-12")


@dataclass(frozen=True, slots=True)
class PricedUsage:
    cost: Decimal
    source: str  # provided | computed | unpriced | none
    price_id: int = 0


@dataclass(frozen=True, slots=True)
class SpanCost:
    usage: TokenUsage
    cost: Decimal
    source: str
    price_id: int


@lru_cache(maxsize=1024)  # bounded: provider names come from clients
def _provider_alias(name: str) -> str:
    """genai-prices' id for a provider spelled another way (OpenAI, bedrock, vertex_ai...)."""
    # Imported on first use: the package's data takes a quarter of a second to load.
    from genai_prices.data import providers
    from genai_prices.data_snapshot import find_provider_by_id

    provider = find_provider_by_id(providers, name)
    return provider.id if provider else name


@dataclass
class PriceTable:
    """The price rows as one process holds them, with the candidates of each name memoised.

    A row applies to a span when its pattern matches the whole model name (ignoring case) and
    the span starts within [effective_from, effective_to). If the span names a provider and
    some matching rows are that provider's (or any provider's), only those compete. Otherwise
    a `provider/model` name (LiteLLM's spelling) whose provider has rows is read as that
    provider's `model`; failing that, every matching row competes. The highest priority wins,
    then the latest effective_from, then the newest row.
    """

    rows: tuple[PriceRow, ...]
    providers: frozenset[str] = field(init=False)
    # The highest input-side (input, cached read, cache write) and output prices of any row:
    # what a token can cost at most, so ingestion can refuse counts whose cost cannot be stored.
    highest: tuple[int, int] = field(init=False)
    _memo: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.providers = frozenset(row.provider for row in self.rows)
        self.highest = (max((max(r.input, r.cached_input, r.cache_write) for r in self.rows),
                            default=0),
                        max((r.output for r in self.rows), default=0))

    def provider_id(self, provider: str) -> str:
        name = provider.strip().lower()
        return name if not name or name in self.providers else _provider_alias(name)

    def candidates(self, model: str, provider: str) -> tuple[PriceRow, ...]:
        key = (model, provider)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= settings.COSTS_PRICE_MEMO_MAX:
                self._memo.clear()  # bounded: a flood of made-up model names must not grow it
            found = self._memo[key] = self._match(model, self.provider_id(provider))
        return found

    def _match(self, model: str, provider: str) -> tuple[PriceRow, ...]:
        matching = [row for row in self.rows if row.pattern.fullmatch(model)]
        if provider:
            own = [row for row in matching if row.provider in (provider, "")]
            if own:
                return _ranked(own)
        prefix, _, rest = model.partition("/")
        if rest and self.provider_id(prefix) in self.providers:
            split = self._match(rest, provider or self.provider_id(prefix))
            if split:
                return split
        return _ranked(matching)


def _ranked(rows: list[PriceRow]) -> tuple[PriceRow, ...]:
    """Best first: highest priority, then latest effective_from, then newest row."""
    return tuple(sorted(rows, reverse=True, key=lambda row: (
        row.priority,
        row.effective_from.timestamp() if row.effective_from else float("-inf"),
        row.id,
    )))


# L1 cache (design document: pricing tables, 1 h, invalidated on admin update): each process
# keeps the rows for PRICING_CACHE_TTL_S and drops them as soon as any process announces a
# change (llmops.changes: Redis pub/sub, one listener thread per process).
TOPIC = "pricing"


def _read_prices() -> PriceTable:
    return PriceTable(tuple(PriceRow.of(price) for price in Price.objects.all()))


cached_prices = changes.AnnouncedCache(TOPIC, _read_prices, ttl_setting="PRICING_CACHE_TTL_S")


def forget_cached_prices() -> None:
    """Drop this process's price rows; the next lookup reads them again."""
    cached_prices.forget()


def price_table() -> PriceTable:
    """The rows in force for this process: at most PRICING_CACHE_TTL_S old, and never older
    than the last change announced."""
    return cached_prices.get()


def price_for(*, model: str, provider: str = "", at: datetime) -> PriceRow | None:
    """The price row for a call to `model` at `at`, or None when no row matches."""
    for row in price_table().candidates(model, provider):
        if row.in_force(at):
            return row
    return None


def provided_cost(cost: float) -> Decimal:
    """A client's cost as stored: its shortest decimal form, to 12 decimals (half to even)."""
    return Decimal(repr(cost)).quantize(COST_EXPONENT)


def price_usage(*, model: str, provider: str, at: datetime, usage: TokenUsage) -> PricedUsage:
    """The computed cost of `usage`: 'computed' with its price row, 'unpriced' (cost 0) when no
    row matches, 'none' for a span with neither model nor tokens (nothing to price)."""
    if not model and usage.source == "none":
        return PricedUsage(Decimal(0), "none")
    row = price_for(model=model, provider=provider, at=at)
    if row is None:
        return PricedUsage(Decimal(0), "unpriced")
    return PricedUsage(row.cost_of(usage), "computed", row.id)


def cost_of_span(span: SpanIn) -> SpanCost:
    """Usage and cost of a span as stored: the client's cost when it sent one, else computed
    from its usage (reported or estimated) and the price in force at its start."""
    usage = usage_of_span(span)
    if span.cost is not None:
        return SpanCost(usage, provided_cost(span.cost), "provided", 0)
    priced = price_usage(model=span.model, provider=span.provider, at=span.start_time,
                         usage=usage)
    return SpanCost(usage, priced.cost, priced.source, priced.price_id)


def pricing_changed() -> None:
    """Announce a committed price change: this process forgets at once, the others as soon as
    their listener hears it."""
    changes.announce(TOPIC)
