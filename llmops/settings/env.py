"""One typed reader for the environment, so a bad value fails at start-up with its name."""

import os
from decimal import Decimal
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T", str, int, float, bool, Decimal, list)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: T) -> T:
    """Read `name` from the environment, cast to the type of `default`."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if isinstance(default, list):
            return [item.strip() for item in raw.split(",") if item.strip()]
        return type(default)(raw)
    except (ValueError, ArithmeticError) as exc:
        raise ImproperlyConfigured(
            f"environment variable {name}={raw!r} is not a valid {type(default).__name__}: {exc}"
        ) from exc
