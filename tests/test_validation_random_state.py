"""Tests for npclust.validation.check_random_state."""

import numpy as np
import pytest

from npclust.validation import check_random_state


def test_none_gives_fresh_generators():
    a, b = check_random_state(None), check_random_state(None)
    assert isinstance(a, np.random.Generator)
    assert a is not b
    assert not np.array_equal(a.random(4), b.random(4))


@pytest.mark.parametrize("seed", [0, 12345, np.int64(7), np.uint8(3), 2**70])
def test_int_seeds_reproduce_default_rng(seed):
    rng = check_random_state(seed)
    np.testing.assert_array_equal(rng.random(5), np.random.default_rng(int(seed)).random(5))


def test_generator_is_returned_itself():
    rng = np.random.default_rng(0)
    assert check_random_state(rng) is rng


@pytest.mark.parametrize(
    "seed, type_name",
    [(True, "bool"), (np.bool_(False), "bool"), (1.0, "float"), ("0", "str"),
     (np.random.RandomState(0), "RandomState"), ([1, 2], "list")],
)
def test_other_types_are_rejected(seed, type_name):
    with pytest.raises(TypeError, match=f"random_state must be .* got {type_name}"):
        check_random_state(seed)


def test_negative_int_is_rejected():
    with pytest.raises(ValueError, match="non-negative int, got -1"):
        check_random_state(-1)
