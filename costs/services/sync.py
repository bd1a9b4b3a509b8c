"""Price rows from the genai-prices package: its match rules as anchored patterns, its prices."""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import transaction
from django.utils import timezone
from genai_prices import types as gp

from costs.models import Price
from costs.services.pricing import pricing_changed

PRICE_EXPONENT = Decimal("0.000001")  # the Price model's six decimals
# genai-prices tries a provider's models in order and, for a model name alone, the provider
# whose own rule claims it (anthropic for claude-*) before others that offer it too. Synced
# priorities keep that order in three bands, each in the package's model order: the model's
# own provider (-1 down), a provider with models of its own offering it (Vertex's claude,
# -100001 down), a pure reseller (Bedrock, OpenRouter, -200001 down). An operator's row at
# the default priority 0 outranks them all.
BAND = 100_000


def pattern_of(clause) -> str:
    """A genai-prices match clause as a regular expression for the whole (lower-cased) name."""
    match clause:
        case gp.ClauseEquals(equals=text):
            return re.escape(text.lower())
        case gp.ClauseStartsWith(starts_with=text):
            return re.escape(text.lower()) + ".*"
        case gp.ClauseEndsWith(ends_with=text):
            return ".*" + re.escape(text.lower())
        case gp.ClauseContains(contains=text):
            return ".*" + re.escape(text.lower()) + ".*"
        case gp.ClauseRegex(regex=regex):
            return f".*(?:{regex}).*"  # the package searches anywhere in the name
        case gp.ClauseOr(or_=clauses):
            return "(?:" + "|".join(pattern_of(each) for each in clauses) + ")"
        case gp.ClauseAnd(and_=clauses):
            return "".join(f"(?=(?:{pattern_of(each)})$)" for each in clauses) + ".*"
    raise ValueError(f"unknown genai-prices clause {clause!r}")


def _price(value) -> Decimal | None:
    if isinstance(value, gp.TieredPrices):
        value = value.base  # long-context tiers are not modelled: the base rate applies
    return None if value is None else value.quantize(PRICE_EXPONENT, ROUND_HALF_EVEN)


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def periods(model: gp.ModelInfo) -> list[tuple[date | None, date | None, gp.ModelPrice]]:
    """(from, to, prices) in force, as genai-prices chooses them: the last price whose start
    date has come, else the first. Time-of-day discounts (off-peak) are not modelled."""
    entries = model.prices if isinstance(model.prices, list) else [
        gp.ConditionalPrice(prices=model.prices)]
    entries = [e for e in entries if not isinstance(e.constraint, gp.TimeOfDateConstraint)]
    starts = sorted({e.constraint.start_date for e in entries
                     if isinstance(e.constraint, gp.StartDateConstraint)})

    def chosen(day: date | None) -> gp.ModelPrice:
        active = [e for e in entries if e.constraint is None
                  or (day is not None and e.constraint.start_date <= day)]
        return (active[-1] if active else entries[0]).prices

    result = []
    for start, end in zip([None, *starts], [*starts, None], strict=True):
        prices = chosen(start)
        if result and result[-1][2] is prices:
            result[-1] = (result[-1][0], end, prices)
        else:
            result.append((start, end, prices))
    return result


def package_rows() -> list[dict]:
    """Every token-priced model of the package, as Price fields keyed by sync_key."""
    from genai_prices.data import providers

    rows = []
    for provider in providers:
        for index, model in enumerate(provider.models):
            if provider.model_match is None:
                band = 2
            else:
                band = 0 if provider.model_match.is_match(model.id.lower()) else 1
            pattern = pattern_of(model.match)
            for start, end, prices in periods(model):
                input_price, output_price = _price(prices.input_mtok), _price(prices.output_mtok)
                if input_price is None and output_price is None:
                    continue  # priced per image, second or request: not a token price
                rows.append({
                    "sync_key": f"{provider.id}/{model.id}@{start or 'start'}",
                    "provider": provider.id,
                    "model_name": model.id,
                    "model_pattern": pattern,
                    "input_price": input_price or Decimal(0),
                    "output_price": output_price or Decimal(0),
                    "cached_input_price": _price(prices.cache_read_mtok),
                    "cache_write_price": _price(prices.cache_write_mtok),
                    "effective_from": _midnight(start),
                    "effective_to": _midnight(end),
                    "priority": -(band * BAND + index + 1),
                })
    return rows


@dataclass
class SyncResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_operator_edits: int = 0


def sync_prices() -> SyncResult:
    """Create and refresh the package's rows; a row an operator saved is never overwritten."""
    result = SyncResult()
    wanted = package_rows()
    fields = [name for name in wanted[0] if name != "sync_key"]
    with transaction.atomic():
        existing = {p.sync_key: p for p in Price.objects.filter(sync_key__isnull=False)}
        to_create, to_update = [], []
        for row in wanted:
            price = existing.get(row["sync_key"])
            if price is None:
                to_create.append(Price(source=Price.Source.GENAI_PRICES, **row))
            elif price.operator_edited:
                result.kept_operator_edits += 1
            elif any(getattr(price, name) != row[name] for name in fields):
                for name in fields:
                    setattr(price, name, row[name])
                price.updated_at = timezone.now()
                to_update.append(price)
            else:
                result.unchanged += 1
        Price.objects.bulk_create(to_create, batch_size=500)
        Price.objects.bulk_update(to_update, fields + ["updated_at"], batch_size=500)
        result.created, result.updated = len(to_create), len(to_update)
        if to_create or to_update:
            # Bulk writes send no signals: announce once, after the commit.
            transaction.on_commit(pricing_changed)
    return result
