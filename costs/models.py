"""Model prices, in USD per million tokens, as operators and the `sync_prices` command keep them."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


def validate_pattern(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(f"not a valid regular expression: {exc}") from exc


def price_field(verbose_name: str, **options) -> models.DecimalField:
    # Six decimals per million tokens is 1e-12 USD per token: every span's cost is then exact
    # in the spans table's Decimal64(12), with no rounding.
    return models.DecimalField(verbose_name=verbose_name, max_digits=18, decimal_places=6,
                               validators=[MinValueValidator(0)], **options)


class Price(models.Model):
    """A model's prices over a period. The row that prices a span is the one with the highest
    priority among those whose pattern matches its model and that are in force at its start."""

    class Source(models.TextChoices):
        GENAI_PRICES = "genai-prices", "genai-prices package"
        OPERATOR = "operator", "operator"

    provider = models.CharField(
        max_length=64, blank=True, db_index=True,
        help_text="Provider id, lower case (openai, anthropic, aws, azure...). Empty: any.",
    )
    model_name = models.CharField(max_length=200, help_text="The model the pattern stands for.")
    model_pattern = models.CharField(
        max_length=4000, validators=[validate_pattern],
        help_text="Python regular expression matched against the whole model name, ignoring "
                  "case: `gpt-4o(-\\d{4}-\\d{2}-\\d{2})?` matches gpt-4o and its snapshots.",
    )
    input_price = price_field("input, USD / 1M tokens")
    output_price = price_field("output, USD / 1M tokens")
    cached_input_price = price_field(
        "cached input read, USD / 1M tokens", null=True, blank=True,
        help_text="Empty: cached input tokens cost the input price.",
    )
    cache_write_price = price_field(
        "cache write, USD / 1M tokens", null=True, blank=True,
        help_text="Empty: cache-write tokens cost the input price.",
    )
    effective_from = models.DateTimeField(
        null=True, blank=True, help_text="In force from this instant (included). Empty: always."
    )
    effective_to = models.DateTimeField(
        null=True, blank=True, help_text="In force until this instant (excluded). Empty: open."
    )
    priority = models.IntegerField(
        default=0,
        help_text="Highest wins where several rows match. Synced rows are negative (their "
                  "package's own order), so an operator's row at 0 wins over all of them.",
    )
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.OPERATOR)
    operator_edited = models.BooleanField(
        default=False, help_text="Saved by an operator: `sync_prices` never overwrites it."
    )
    # Identifies a synced row in the package data: provider/model@start.
    sync_key = models.CharField(max_length=300, unique=True, null=True, blank=True,
                                editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    CURRENCY = "USD"

    class Meta:
        ordering = ["provider", "model_name", "effective_from"]
        indexes = [models.Index(fields=["model_name"])]

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model_name}"

    def clean(self) -> None:
        if self.effective_from and self.effective_to and self.effective_to <= self.effective_from:
            raise ValidationError({"effective_to": "must be after effective_from"})
