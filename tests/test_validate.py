"""The one config validator: unknown/missing fields, types, ranges, finiteness, one line."""

import math

import ml_collections
import pytest

from imsyn import validate
from imsyn.errors import ConfigError

SCHEMA = {
    "steps": validate.integer(min=1),
    "lr": validate.number(min=0, open_min=True),
    "beta": validate.number(min=0, max=1, open_max=True),
    "loss": validate.one_of("lsgan", "hinge"),
    "flag": validate.boolean(),
    "name": validate.string(nonempty=True),
}


def _config(**overrides):
    base = {"steps": 10, "lr": 1e-3, "beta": 0.5, "loss": "lsgan", "flag": True, "name": "x"}
    return {**base, **overrides}


def test_valid_config_passes():
    validate.check(_config(), SCHEMA)
    validate.check(ml_collections.ConfigDict(_config()), SCHEMA)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"steps": 0}, "config.steps must be an integer >= 1, got 0"),
        ({"steps": True}, "config.steps must be an integer >= 1, got True"),
        ({"steps": 2.0}, "config.steps must be an integer >= 1, got 2.0"),
        ({"lr": 0.0}, "config.lr must be a finite number > 0, got 0.0"),
        ({"lr": math.nan}, "config.lr must be a finite number > 0, got nan"),
        ({"lr": math.inf}, "config.lr must be a finite number > 0, got inf"),
        ({"beta": 1.0}, "config.beta must be a finite number in [0, 1), got 1.0"),
        ({"loss": "wgan"}, "config.loss must be one of 'lsgan', 'hinge', got 'wgan'"),
        ({"flag": 1}, "config.flag must be True or False, got 1"),
        ({"name": "  "}, "config.name must be a non-empty string, got '  '"),
        ({"bogus": 1}, "unknown config field config.bogus"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate.check(_config(**overrides), SCHEMA)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_field_and_custom_rule():
    c = _config()
    del c["loss"]
    with pytest.raises(ConfigError, match=r"^config.loss is missing$"):
        validate.check(c, SCHEMA)

    def even(v):
        if v % 2:
            raise ValueError
        return v

    with pytest.raises(ConfigError, match="config.steps must be an even integer, got 3"):
        validate.check({"steps": 3}, {"steps": validate.custom(even, "an even integer")})


def test_a_field_table_gives_the_defaults_and_the_rules():
    table = {
        "num_steps": validate.Decl(100, validate.integer(min=1), "steps"),
        "every": validate.Decl(
            lambda c: c.get_ref("num_steps") // 10, validate.integer(min=1), "steps between logs"
        ),
        "a1": {"repeats": validate.Decl(5, validate.integer(min=1, max=9), "timing repeats")},
    }
    validate.check_table(table)
    c = validate.make_config(table)
    assert (c.num_steps, c.every, c.a1.repeats) == (100, 10, 5)
    validate.check(c, table)
    c.num_steps = 50  # a derived default follows what it derives from until set
    assert c.every == 5
    c.every = 7
    c.num_steps = 500
    assert c.every == 7
    c.a1.repeats = 10  # a nested table's field is named with its path
    with pytest.raises(ConfigError, match=r"^config.a1.repeats must be an integer in \[1, 9\]"):
        validate.check(c, table)
    with pytest.raises(ConfigError, match=r"^config.a1 must be a group of fields, got 3$"):
        validate.check({"num_steps": 1, "every": 1, "a1": 3}, table)
