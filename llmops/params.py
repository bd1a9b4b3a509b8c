"""Parameters every read shares (the query API, costs, evaluation, the pages): the time
window and the refusal of unknown parameters, validated here so a bad one is a 400 naming it."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

# What the store can index by day (ClickHouse Date); a time outside is a client error.
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(2149, 6, 1, tzinfo=UTC)


def _check_range(name: str, value: datetime) -> None:
    if not EARLIEST <= value <= LATEST:
        raise ValidationError({name: [f"must be between {EARLIEST:%Y-%m-%d} and "
                                      f"{LATEST:%Y-%m-%d}"]})


def resolve_window(start: datetime | None, end: datetime | None,
                   now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end): `to` defaults to now, `from` to QUERY_DEFAULT_WINDOW_S before `to`."""
    end = end or now or datetime.now(UTC)
    if start is not None:
        _check_range("from", start)
    _check_range("to", end)  # before `from` is computed from it: year 1 has no day before
    start = start or end - timedelta(seconds=settings.QUERY_DEFAULT_WINDOW_S)
    _check_range("from", start)
    if start >= end:
        raise ValidationError({"from": ["must be before `to`"]})
    if end - start > timedelta(days=settings.QUERY_MAX_WINDOW_DAYS):
        raise ValidationError({"from": [f"the window from `from` to `to` is longer than "
                                         f"{settings.QUERY_MAX_WINDOW_DAYS} days"]})
    return start, end


class QueryParams(serializers.Serializer):
    """Base: unknown parameters are refused too, since a misspelt filter would match all."""

    RENAMED = {"from_": "from"}  # Python names for parameters that are keywords

    def get_fields(self):
        fields = super().get_fields()
        return {self.RENAMED.get(name, name): field for name, field in fields.items()}

    @classmethod
    def parse(cls, request) -> dict:
        unknown = sorted(set(request.query_params) - set(cls().fields))
        if unknown:
            raise ValidationError({name: ["unknown parameter"] for name in unknown})
        serializer = cls(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class WindowParams(QueryParams):
    from_ = serializers.DateTimeField(
        required=False, default_timezone=UTC,
        help_text="ISO 8601 start of the window, inclusive (default: `to` minus 24 hours).")
    to = serializers.DateTimeField(
        required=False, default_timezone=UTC,
        help_text="ISO 8601 end of the window, exclusive (default: now). At most "
                  "QUERY_MAX_WINDOW_DAYS (31) days after `from`.")

    def validate(self, attrs: dict) -> dict:
        resolve_window(attrs.get("from"), attrs.get("to"))
        return attrs
