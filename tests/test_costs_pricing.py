"""Prices: genai-prices rules carried over exactly, cost arithmetic by hand, sync and admin."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from genai_prices import types as gp
from genai_prices.data import providers

from costs.models import Price
from costs.services.pricing import PriceRow
from costs.services.sync import package_rows, pattern_of, periods, sync_prices
from costs.services.tokens import TokenUsage
from tests.ingest_helpers import days_ago

# A day boundary for the admin's date fields.
DAY = days_ago(9)


def _literals(clause):
    if isinstance(clause, gp.ClauseOr | gp.ClauseAnd):
        for each in getattr(clause, "or_", None) or clause.and_:
            yield from _literals(each)
    elif not isinstance(clause, gp.ClauseRegex):
        yield next(iter(vars(clause).values()))


def test_synced_patterns_match_exactly_the_names_the_package_matches():
    names = set()
    for provider in providers:
        for model in provider.models:
            names.add(model.id)
            for text in _literals(model.match):
                # The name, a dated snapshot of it, something before it, another case.
                names |= {text, f"{text}-2024-08-06", f"x{text}", text.upper()}
    names = sorted(names)
    mismatches = []
    models = [(provider, model) for provider in providers for model in provider.models]
    for index, (provider, model) in enumerate(models):
        pattern = re.compile(pattern_of(model.match), re.IGNORECASE)
        own = {n for text in _literals(model.match)
               for n in (text, f"{text}-2024-08-06", f"x{text}", text.upper())}
        # Every model against its own names and near misses, and a stride of all names.
        for name in own | set(names[index % 40::40]):
            if bool(pattern.fullmatch(name)) != model.is_match(name):
                mismatches.append((provider.id, model.id, name))
    assert not mismatches, mismatches[:20]


def test_price_periods_are_the_ones_the_package_chooses():
    checked = 0
    for provider in providers:
        for model in provider.models:
            if not isinstance(model.prices, list) or any(
                    isinstance(p.constraint, gp.TimeOfDateConstraint) for p in model.prices):
                continue
            spans = periods(model)
            boundaries = [start for start, _, _ in spans if start is not None]
            for day in boundaries:
                midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
                for moment in (midnight - timedelta(microseconds=1), midnight):
                    ours = next(prices for start, end, prices in spans
                                if (start is None or start <= moment.date())
                                and (end is None or moment.date() < end))
                    assert ours is model.get_prices(moment), (provider.id, model.id, moment)
                    checked += 1
    assert checked > 100


def test_synced_prices_have_six_decimals_and_token_prices_only():
    rows = package_rows()
    assert len(rows) > 2000
    assert len({row["sync_key"] for row in rows}) == len(rows)
    for row in rows:
        for name in ("input_price", "output_price", "cached_input_price", "cache_write_price"):
            value = row[name]
            assert value is None or -value.as_tuple().exponent <= 6, row


def _row(**prices) -> PriceRow:
    fields = {"input_price": Decimal("2.5"), "output_price": Decimal("10"),
              "cached_input_price": Decimal("1.25"), "cache_write_price": Decimal("3.125")}
    fields.update(prices)
    return PriceRow.of(Price(id=7, model_name="m", model_pattern="m", **fields))


@pytest.mark.parametrize("row, usage, expected", [
    # 400 of 1,000 prompt tokens read from the cache, 100 written to it, 50 out:
    # 500 x 2.5 + 400 x 1.25 + 100 x 3.125 + 50 x 10 = 2,562.5 per million tokens.
    (_row(), TokenUsage(input_tokens=1000, cached_input_tokens=400, cache_write_tokens=100,
                        output_tokens=50), Decimal("0.0025625")),
    # No cache prices: cached and written tokens cost the input price, counted once:
    # 1,000 x 2.5 + 50 x 10 = 3,000.
    (_row(cached_input_price=None, cache_write_price=None),
     TokenUsage(input_tokens=1000, cached_input_tokens=400, cache_write_tokens=100,
                output_tokens=50), Decimal("0.003")),
    # Everything cached: 1,000 x 1.25 = 1,250.
    (_row(), TokenUsage(input_tokens=1000, cached_input_tokens=1000), Decimal("0.00125")),
    # gpt-4o-mini's prices, 7 tokens in (3 cached), 11 out:
    # 4 x 0.15 + 3 x 0.075 + 11 x 0.6 = 7.425 per million -> 0.000007425.
    (_row(input_price=Decimal("0.15"), cached_input_price=Decimal("0.075"),
          output_price=Decimal("0.6")),
     TokenUsage(input_tokens=7, cached_input_tokens=3, output_tokens=11), Decimal("7.425e-6")),
    # Smallest price, one token: 1e-12 USD, exactly.
    (_row(input_price=Decimal("0.000001")), TokenUsage(input_tokens=1), Decimal("1e-12")),
    # A trillion tokens at 0.123456 and 999,999.999999 per million: no rounding anywhere.
    (_row(input_price=Decimal("0.123456"), output_price=Decimal("999999.999999")),
     TokenUsage(input_tokens=10**12, output_tokens=10**12),
     Decimal("123456") + Decimal("999999999999")),
])
def test_cached_token_arithmetic_by_hand(row, usage, expected):
    cost = row.cost_of(usage)
    assert cost == expected
    assert cost.as_tuple().exponent == -12  # stored as is in Decimal64(12)


@pytest.mark.django_db
def test_sync_seeds_refreshes_and_never_overwrites_an_operators_edit(client):
    first = sync_prices()
    assert first.created > 2000 and first.updated == 0
    again = sync_prices()
    assert (again.created, again.updated, again.unchanged) == (0, 0, first.created)

    # An operator edits a synced row in the admin...
    gpt4o = Price.objects.get(sync_key="openai/gpt-4o@start")
    admin = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(admin)
    response = client.post(f"/admin/costs/price/{gpt4o.id}/change/", _form(
        gpt4o, input_price="2.400000"))
    assert response.status_code == 302, response.content
    gpt4o.refresh_from_db()
    assert gpt4o.operator_edited and gpt4o.input_price == Decimal("2.4")
    # ...and the package's value of another row drifts from ours (a package update).
    Price.objects.filter(sync_key="openai/gpt-4o-mini@start").update(output_price=9)

    result = sync_prices()
    assert (result.kept_operator_edits, result.updated) == (1, 1)
    gpt4o.refresh_from_db()
    assert gpt4o.input_price == Decimal("2.4")
    assert Price.objects.get(sync_key="openai/gpt-4o-mini@start").output_price == Decimal("0.6")


def _form(price: Price, **changes) -> dict:
    data = {}
    for name in ("provider", "model_name", "model_pattern", "input_price", "output_price",
                 "cached_input_price", "cache_write_price", "priority", "operator_edited"):
        value = getattr(price, name)
        data[name] = "" if value is None else value
    for name in ("effective_from", "effective_to"):
        value = getattr(price, name)
        data[f"{name}_0"] = value.date().isoformat() if value else ""
        data[f"{name}_1"] = value.time().isoformat() if value else ""
    data.update(changes)
    if not data["operator_edited"]:
        del data["operator_edited"]  # an unticked checkbox is absent from a form
    return data


@pytest.mark.django_db
def test_admin_lists_searches_filters_and_validates(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    Price.objects.create(provider="openai", model_name="gpt-test", model_pattern=r"gpt-test.*",
                         input_price=1, output_price=2, source=Price.Source.GENAI_PRICES)
    Price.objects.create(provider="", model_name="house-model", model_pattern="house-model",
                         input_price=3, output_price=4, operator_edited=True)
    page = client.get("/admin/costs/price/?q=house")
    assert page.status_code == 200
    assert b"house-model" in page.content and b"gpt-test" not in page.content
    assert b"operator_edited" in client.get("/admin/costs/price/").content
    assert b"gpt-test" in client.get("/admin/costs/price/?source__exact=genai-prices").content

    response = client.post("/admin/costs/price/add/", {
        "provider": "", "model_name": "bad", "model_pattern": "gpt-(4o", "input_price": "1",
        "output_price": "1", "priority": "0",
        "effective_from_0": str(DAY.date()), "effective_from_1": "00:00:00",
        "effective_to_0": str((DAY - timedelta(days=1)).date()), "effective_to_1": "00:00:00"})
    assert response.status_code == 200  # the form again, with its errors
    assert b"not a valid regular expression" in response.content
    assert b"must be after effective_from" in response.content

    response = client.post("/admin/costs/price/add/", {
        "provider": "acme", "model_name": "acme-1", "model_pattern": "acme-1",
        "input_price": "1.123456", "output_price": "2", "priority": "0",
        "effective_from_0": str(DAY.date()), "effective_from_1": "00:00:00"})
    assert response.status_code == 302
    added = Price.objects.get(model_name="acme-1")
    assert added.source == Price.Source.OPERATOR and added.operator_edited
    assert added.effective_from == DAY
