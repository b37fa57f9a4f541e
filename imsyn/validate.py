"""The one way to declare and validate a config: a field table, one error format.

Each task declares every config field once, in one table: its default, its rule and a
one-line meaning (:class:`Decl`)::

    FIELDS = {
        "num_steps": Decl(300, integer(min=1), "optimization steps"),
        "lr": Decl(0.02, number(min=0, open_min=True), "Adam's learning rate"),
        "loss": Decl("lsgan", one_of("lsgan", "bce", "hinge"), "the GAN objective"),
        "sample_every": Decl(
            lambda c: c.get_ref("num_steps") // 10, integer(min=1), "steps between samples"
        ),
    }
    config = validate.make_config(FIELDS)  # the defaults (configs/<task>.py builds on them)
    validate.check(config, FIELDS)  # the rules

A default may be a function of the config being built that returns an
``ml_collections`` field reference (``sample_every`` above): the field then follows
``num_steps`` until it is set. A nested table (a field whose entry is itself a table)
is a nested ``ConfigDict``. ``--show_config`` prints each field's meaning from the table.

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


class Decl(NamedTuple):
    """One config field, declared once: its default, its rule and what it means.

    ``default`` is a value, or a function of the config being built (the fields above it
    in the table are set) returning the value: ``lambda c: c.get_ref("num_steps") // 16``
    is a default that follows ``num_steps`` until the field is set.
    """

    default: Any
    rule: Field
    meaning: str  #: one line, for ``--show_config``


#: a field table: name -> :class:`Decl`, or -> a nested table (a nested ``ConfigDict``)
Table = Mapping[str, "Decl | Table"]


def _num(v) -> str:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else f"{v:g}"


def _range_text(lo, hi, open_lo: bool, open_hi: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if open_lo else '['}{_num(lo)}, {_num(hi)}{')' if open_hi else ']'}"
    if lo is not None:
        return f" {'>' if open_lo else '>='} {_num(lo)}"
    if hi is not None:
        return f" {'<' if open_hi else '<='} {_num(hi)}"
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


def existing_file(*, optional: bool = True) -> Field:
    """A path to an existing file (``""`` allowed when ``optional``)."""
    import os

    def parse(v):
        if not isinstance(v, str) or (v or not optional) and not os.path.isfile(v):
            raise ValueError
        return v

    return Field(parse, "'' or an existing file" if optional else "an existing file")


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


def check(config, schema: Mapping[str, Any], *, prefix: str = "config") -> None:
    """Validates ``config`` against ``schema``: no unknown or missing field, every value valid.

    Args:
      schema: a field table (:class:`Decl` entries and nested tables, checked with
        ``prefix.<name>``), or plain name -> :class:`Field` rules.

    Raises:
      ConfigError: one line naming the first offending field and what it must be.
    """
    check_fields(config, schema, prefix=prefix)
    for name, entry in schema.items():
        if name not in config:
            raise ConfigError(f"{prefix}.{name} is missing")
        if isinstance(entry, Mapping):
            if not hasattr(config[name], "keys"):
                raise ConfigError(
                    f"{prefix}.{name} must be a group of fields, got {config[name]!r}"
                )
            check(config[name], entry, prefix=f"{prefix}.{name}")
        else:
            value(
                name, config[name], entry.rule if isinstance(entry, Decl) else entry, prefix=prefix
            )


def make_config(table: Table):
    """The ``ml_collections.ConfigDict`` of a field table's defaults (nested tables nested).

    Derived defaults (functions) are called with the config built so far, in table order.
    """
    import ml_collections

    c = ml_collections.ConfigDict()
    for name, entry in table.items():
        if isinstance(entry, Mapping):
            c[name] = make_config(entry)
        else:
            c[name] = entry.default(c) if callable(entry.default) else entry.default
    return c


#: the longest meaning a field may have (one line of ``--show_config``)
MAX_MEANING = 150


def check_table(table: Table, *, prefix: str = "") -> None:
    """Raises ``ValueError`` naming a field of ``table`` declared without a :class:`Field`
    rule or without a one-line meaning (what a test of every task's table asserts)."""
    for name, entry in table.items():
        if isinstance(entry, Mapping):
            check_table(entry, prefix=f"{prefix}{name}.")
        elif not isinstance(entry, Decl) or not isinstance(entry.rule, Field):
            raise ValueError(
                f"field {prefix}{name} is not declared as Decl(default, rule, meaning)"
            )
        elif not isinstance(entry.meaning, str) or not entry.meaning.strip():
            raise ValueError(f"field {prefix}{name} has no meaning")
        elif "\n" in entry.meaning or len(entry.meaning) > MAX_MEANING:
            raise ValueError(
                f"field {prefix}{name}: the meaning must be one line (<= {MAX_MEANING})"
            )


# --------------------------------------------------------------------------- command lines

#: the integers an option may take when the value reaches JAX/NumPy as int32 / int64
#: (``jax.random.key(seed)`` takes seeds up to INT64_MAX)
INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
INT64_MAX = 2**63 - 1


def _parse_int(text: str) -> int:
    t = text.strip()
    if not t or not t.lstrip("+-").isdigit():  # no floats ("1e23"), no "0x..."
        raise ValueError
    return int(t)


def _parse_float(text: str) -> float:
    return float(text.strip())


def _parse_text(field: Field, text: str):
    """``text`` as the kind of value ``field`` checks (integer fields take integers only)."""
    if field.expect.startswith("an integer"):
        return _parse_int(text)
    if field.expect.startswith("a finite number"):
        return _parse_float(text)
    return text


def arg(field: Field) -> Callable[[str], Any]:
    """An argparse ``type=`` for ``field``: the same rule as in a config, for an option.

    ``parser.add_argument("--tol", type=validate.arg(validate.number(0, 1, open_min=True,
    open_max=True)))`` refuses ``inf``, ``nan``, ``1e30`` and ``abc`` when the command line
    is parsed, with ``argument --tol: must be a finite number in (0, 1), got 'inf'``.
    Integer fields accept only integers; bound them (:data:`INT32_MAX`) to what the code
    can represent.
    """
    import argparse

    def parse(text: str):
        try:
            return field.parse(_parse_text(field, text))
        except (ValueError, TypeError, OverflowError, ConfigError):
            raise argparse.ArgumentTypeError(f"must be {field.expect}, got {text!r}") from None

    parse.__name__ = field.expect  # argparse names the type in some messages
    return parse


def arg_tuple(field: Field, n: int, *, names: str = "") -> Callable[[str], tuple]:
    """An argparse ``type=`` for ``n`` comma-separated values, each checked by ``field``.

    Args:
      field: the rule for every element.
      n: how many values.
      names: what they are, for the message (``"DY,DX"``).
    """
    import argparse

    what = names or ",".join(["V"] * n)

    def parse(text: str) -> tuple:
        parts = text.replace(" ", "").split(",")
        if len(parts) != n:
            raise argparse.ArgumentTypeError(
                f"must be {what}: {n} comma-separated values, each {field.expect}, got {text!r}"
            )
        try:
            return tuple(field.parse(_parse_text(field, p)) for p in parts)
        except (ValueError, TypeError, OverflowError, ConfigError):
            raise argparse.ArgumentTypeError(
                f"must be {what}, each {field.expect}, got {text!r}"
            ) from None

    parse.__name__ = what
    return parse


def param(name: str, v, field: Field):
    """Checks a library function's argument with the rule of a CLI option; returns it.

    Raises:
      InputError: ``"{name} must be {expect}, got {v!r}"`` (one line).
    """
    from imsyn.errors import InputError

    try:
        return field.parse(v)
    except (ValueError, TypeError, OverflowError, ConfigError):
        raise InputError(f"{name} must be {field.expect}, got {v!r}") from None


def one_line_errors(parser) -> None:
    """Makes ``parser`` report a bad command line as one line (no usage block), exit 2."""

    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    parser.error = error
