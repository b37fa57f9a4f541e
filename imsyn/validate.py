"""The one way to validate a config: a declarative schema, one error format.

Each task declares its fields once::

    SCHEMA = {
        "num_steps": validate.integer(min=1),
        "lr": validate.number(min=0, open_min=True),
        "loss": validate.one_of("lsgan", "bce", "hinge"),
        "features_path": validate.string(),
    }
    validate.check(config, {**loop.COMMON_SCHEMA, **SCHEMA})

:func:`check` rejects unknown and missing fields and every bad value with a
:class:`~imsyn.errors.ConfigError` whose message is one line:
``config.lr must be a number > 0, got -1``. Numbers must be finite (NaN and
infinities never pass) and booleans are neither integers nor numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from imsyn.errors import ConfigError


class Field(NamedTuple):
    """How one value is checked: ``parse(value) -> value`` raising ``ValueError``."""

    parse: Callable[[Any], Any]
    expect: str  #: what a valid value is, for the error message


def _range_text(lo, hi, open_lo: bool, open_hi: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
    if lo is not None:
        return f" {'>' if open_lo else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if open_hi else '<='} {hi:g}"
    return ""


def _in_range(v, lo, hi, open_lo, open_hi) -> bool:
    if lo is not None and (v <= lo if open_lo else v < lo):
        return False
    return not (hi is not None and (v >= hi if open_hi else v > hi))


def integer(min=None, max=None) -> Field:
    """An integer (not a bool, not a float) in ``[min, max]``."""
    expect = "an integer" + _range_text(min, max, False, False)

    def parse(v):
        if isinstance(v, bool):
            raise ValueError
        if not isinstance(v, int) or not _in_range(v, min, max, False, False):
            raise ValueError
        return v

    return Field(parse, expect)


def number(min=None, max=None, *, open_min: bool = False, open_max: bool = False) -> Field:
    """A finite int or float in the range (``open_*`` excludes that bound)."""
    expect = "a finite number" + _range_text(min, max, open_min, open_max)

    def parse(v):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError
        if not _in_range(v, min, max, open_min, open_max):
            raise ValueError
        return v

    return Field(parse, expect)


def boolean() -> Field:
    def parse(v):
        if not isinstance(v, bool):
            raise ValueError
        return v

    return Field(parse, "True or False")


def string(*, nonempty: bool = False, expect: str = "") -> Field:
    def parse(v):
        if not isinstance(v, str) or (nonempty and not v.strip()):
            raise ValueError
        return v

    return Field(parse, expect or ("a non-empty string" if nonempty else "a string"))


def one_of(*choices) -> Field:
    def parse(v):
        if isinstance(v, bool) != isinstance(choices[0], bool) or v not in choices:
            raise ValueError
        return v

    return Field(parse, f"one of {', '.join(repr(c) for c in choices)}")


def custom(parse: Callable[[Any], Any], expect: str) -> Field:
    """Any rule: ``parse`` returns the value or raises ``ValueError``/``ConfigError``."""
    return Field(parse, expect)


def check_fields(config: Mapping, allowed: Iterable[str], *, prefix: str = "config") -> None:
    """Raises ConfigError naming the first field of ``config`` not in ``allowed``."""
    allowed = set(allowed)
    unknown = sorted(k for k in config.keys() if k not in allowed)
    if unknown:
        raise ConfigError(
            f"unknown config field {prefix}.{unknown[0]} (known: {', '.join(sorted(allowed))})"
        )


def value(name: str, v, field: Field, *, prefix: str = "config"):
    """Checks one value against ``field``; returns it."""
    try:
        return field.parse(v)
    except ConfigError as e:
        raise ConfigError(f"{prefix}.{name}: {e}") from None
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"{prefix}.{name} must be {field.expect}, got {v!r}") from None


def check(config, schema: Mapping[str, Field], *, prefix: str = "config") -> None:
    """Validates ``config`` against ``schema``: no unknown or missing field, every value valid.

    Raises:
      ConfigError: one line naming the first offending field and what it must be.
    """
    check_fields(config, schema, prefix=prefix)
    for name, field in schema.items():
        if name not in config:
            raise ConfigError(f"{prefix}.{name} is missing")
        value(name, config[name], field, prefix=prefix)
