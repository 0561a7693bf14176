"""Exact power-of-two rescaling (npclust.scaling)."""

import numpy as np
import pytest

from npclust.scaling import SQUARED_DISTANCE_RANGE, power_of_two_scale


@pytest.mark.parametrize("largest", [1.0, 1.5, 1.9999, 2.0, 3.0e-30, 7.0e200, 5e-324, 1e-45])
def test_the_scale_brings_the_largest_value_into_one_two(largest):
    dtype = np.float32 if largest == 1e-45 else np.float64
    X = np.array([[largest, -largest / 3], [0.0, largest / 7]], dtype=dtype)
    scale = power_of_two_scale(X)
    assert np.frexp(scale)[0] == 0.5  # a power of two
    if largest >= np.finfo(dtype).smallest_normal:
        assert 1.0 <= np.abs(X).max() * scale < 2.0
    else:
        # Subnormal data: the factor stops at the dtype's largest power of two.
        assert scale == 2.0 ** (np.finfo(dtype).maxexp - 1)
        assert np.isfinite(dtype(scale))


def test_the_largest_magnitude_of_several_arrays_and_negative_values_count():
    assert power_of_two_scale(np.array([1.0]), np.array([-40.0])) == 1 / 32
    assert power_of_two_scale(np.array([0.0, 0.0]), np.empty(0)) == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inside_the_safe_range_the_data_stay_as_they_are(dtype):
    low, high = SQUARED_DISTANCE_RANGE[np.dtype(dtype)]
    for largest in (low, 1.0, 12345.0, high):
        assert power_of_two_scale(np.array([largest], dtype=dtype),
                                  safe_range=(low, high)) == 1.0
    for largest in (low / 4, high * 4):
        assert power_of_two_scale(np.array([largest], dtype=dtype), safe_range=(low, high)) != 1.0
