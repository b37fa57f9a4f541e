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
