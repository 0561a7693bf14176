import warnings

import numpy as np
import pytest
import scipy.special
from gradient_cases import LOGIT_KINDS, assert_matches_numerical
from numpy.testing import assert_allclose, assert_array_equal

from npclust import functional as F
from npclust.gradcheck.cases import awkward_logits

inf = np.inf

SHAPES_AXES = [
    ((6,), 0),
    ((6,), -1),
    ((4, 7), 0),
    ((4, 7), 1),
    ((4, 7), -1),
    ((3, 4, 5), 0),
    ((3, 4, 5), 1),
    ((3, 4, 5), -1),
    ((3, 4, 5), (0, 2)),
]
DTYPES = [np.float32, np.float64]
FORWARDS = [
    (F.logsumexp, scipy.special.logsumexp),
    (F.softmax, scipy.special.softmax),
    (F.log_softmax, scipy.special.log_softmax),
]
# Rows whose non-finite or extreme entries exercise every branch of the forwards.
SPECIAL_ROWS = np.array(
    [
        [0.0, -inf, 1.0, 2.0],
        [-inf, -inf, -inf, -inf],
        [inf, 0.0, 1.0, 2.0],
        [inf, -inf, 0.0, 0.0],
        [inf, inf, 0.0, -inf],
        [np.nan, 0.0, 1.0, inf],
        [1e4, -1e4, 0.0, 5.0],
        [-1e4, -1e4, -1e4, -1e4],
        [1e308, -1e308, 1e308, 0.0],
        [3.0, 3.0, 3.0, -inf],
    ]
)






# ----------------------------------------------------------------------------- forwards


@pytest.mark.parametrize("ours, reference", FORWARDS, ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_scipy(ours, reference, shape, axis, dtype):
    rng = np.random.default_rng(0)
    x = (rng.normal(scale=10.0, size=shape)).astype(dtype)
    result = ours(x, axis=axis)
    assert result.dtype == dtype
    expected = reference(x.astype(np.float64), axis=axis)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(result, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("ours, reference", FORWARDS, ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("axis", [0, 1])
def test_forward_matches_scipy_on_nonfinite_and_extreme_entries(ours, reference, axis):
    x = SPECIAL_ROWS if axis == 1 else SPECIAL_ROWS.T.copy()
    with np.errstate(all="ignore"):
        result = ours(x, axis=axis)
        expected = reference(x, axis=axis)
    # assert_allclose checks that NaN and +-inf occur at the same positions.
    assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "dtype, big", [(np.float32, 1e4), (np.float32, 3e38), (np.float64, 1e4), (np.float64, 1e308)]
)
def test_huge_logits_emit_no_warnings_and_stay_exact(dtype, big):
    x = np.array([[big, -big, 0.0], [-big, -big, -big], [big, big, -big]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lse = F.logsumexp(x)
        y = F.softmax(x)
        log_y = F.log_softmax(x)
        h = F.entropy(x)
    for a in (lse, y, log_y, h):
        assert a.dtype == dtype
    assert_array_equal(y, np.array([[1, 0, 0], [1 / 3] * 3, [0.5, 0.5, 0]], dtype=dtype))
    assert_allclose(lse, np.array([big, -big + np.log(3), big + np.log(2)], dtype=dtype), rtol=1e-6)
    assert log_y[0, 0] == 0 and log_y[0, 1] < -big / 2
    assert_allclose(log_y[1], np.full(3, -np.log(3)), rtol=1e-6)
    assert_allclose(h, np.array([0, np.log(3), np.log(2)], dtype=dtype), rtol=1e-6)


def test_defined_results_of_infinite_rows_do_not_warn():
    x = np.array([[-inf, -inf], [0.0, -inf], [inf, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_array_equal(F.logsumexp(x, axis=1), [-inf, 0.0, inf])
        assert_array_equal(F.softmax(x[1]), [1.0, 0.0])
        assert_array_equal(F.log_softmax(x[1]), [0.0, -inf])


@pytest.mark.parametrize("function", [F.softmax, F.log_softmax])
def test_undefined_row_is_nan_with_a_warning(function):
    with pytest.warns(RuntimeWarning, match="invalid value"):
        y = function(np.array([[-inf, -inf], [0.0, 1.0]]))
    assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
def test_logsumexp_keepdims_and_axis_none(shape, axis):
    x = np.random.default_rng(1).normal(size=shape)
    kept = F.logsumexp(x, axis=axis, keepdims=True)
    assert_allclose(kept, scipy.special.logsumexp(x, axis=axis, keepdims=True), rtol=1e-12)
    assert kept.ndim == x.ndim
    assert_allclose(F.logsumexp(x, axis=None), scipy.special.logsumexp(x), rtol=1e-12)
    assert np.ndim(F.logsumexp(x, axis=None)) == 0


def test_empty_rows_match_scipy():
    x = np.zeros((2, 0))
    assert_array_equal(F.logsumexp(x, axis=1), scipy.special.logsumexp(x, axis=1))
    assert F.softmax(x, axis=1).shape == (2, 0)


def test_integer_input_is_computed_in_float64():
    assert F.softmax([1, 2, 3]).dtype == np.float64
    expected = scipy.special.log_softmax([1.0, 2.0, 3.0])
    assert_allclose(F.log_softmax([1, 2, 3]), expected, rtol=1e-12)


def test_log_softmax_keeps_precision_where_log_of_softmax_underflows():
    log_y = F.log_softmax(np.array([0.0, -800.0]))
    assert log_y[1] == -800.0  # np.log(softmax) would give -inf


# ------------------------------------------------------------------------------ entropy


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_matches_probability_space_formula(shape, axis, dtype):
    x = np.random.default_rng(2).normal(scale=3.0, size=shape).astype(dtype)
    h = F.entropy(x, axis=axis)
    p = scipy.special.softmax(x.astype(np.float64), axis=axis)
    expected = np.sum(scipy.special.entr(p), axis=axis)
    assert h.dtype == dtype
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(h, expected, rtol=tolerance, atol=tolerance)
    h_from_probs = F.entropy_from_probs(F.softmax(x, axis=axis), axis=axis)
    assert_allclose(h_from_probs, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "row", [[0.0, -inf], [1e4, 0.0], [-inf, 5.0, -inf], [0.0, -1e4, -1e4], [7.0]]
)
def test_entropy_of_one_hot_is_exactly_zero(row, dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = F.entropy(np.array(row, dtype=dtype))
    assert h == 0 and not np.signbit(h)
    assert h.dtype == dtype


def test_entropy_of_undefined_rows_is_nan_not_zero():
    with np.errstate(invalid="ignore"):
        h = F.entropy(np.array([[np.nan, 0.0], [-inf, -inf], [inf, 0.0], [0.0, 0.0]]))
    assert np.isnan(h[:3]).all()
    assert h[3] == np.log(2)


def test_entropy_uniform_and_axis():
    x = np.zeros((3, 5))
    assert_allclose(F.entropy(x), np.full(3, np.log(5)), rtol=1e-15)
    assert_allclose(F.entropy(x, axis=0), np.full(5, np.log(3)), rtol=1e-15)


def test_entropy_from_probs_zero_log_zero_convention():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = F.entropy_from_probs(p)
    assert h.dtype == np.float32
    assert h[0] == 0
    assert_allclose(h[1], np.log(2), rtol=1e-6)


# ---------------------------------------------------------------------------- backwards


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("kind", LOGIT_KINDS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_backward(shape, axis, kind, keepdims):
    rng = np.random.default_rng(3)
    x = awkward_logits(kind, shape, rng)
    lse = F.logsumexp(x, axis=axis, keepdims=keepdims)
    dy = rng.normal(size=np.shape(lse))
    dx = F.logsumexp_backward(dy, x, lse, axis=axis)
    assert dx.shape == x.shape
    def f(x):
        return np.sum(dy * F.logsumexp(x, axis=axis, keepdims=keepdims))

    assert_matches_numerical(f, x, dx)


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("kind", LOGIT_KINDS)
def test_softmax_backward(shape, axis, kind):
    rng = np.random.default_rng(4)
    x = awkward_logits(kind, shape, rng)
    dy = rng.normal(size=shape)
    dx = F.softmax_backward(dy, F.softmax(x, axis=axis), axis=axis)
    assert_matches_numerical(lambda x: np.sum(dy * F.softmax(x, axis=axis)), x, dx)


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("kind", LOGIT_KINDS)
def test_log_softmax_backward(shape, axis, kind):
    rng = np.random.default_rng(5)
    x = awkward_logits(kind, shape, rng)
    dy = rng.normal(size=shape)
    dx = F.log_softmax_backward(dy, F.log_softmax(x, axis=axis), axis=axis)
    assert_matches_numerical(lambda x: np.sum(dy * F.log_softmax(x, axis=axis)), x, dx)


@pytest.mark.parametrize("shape, axis", SHAPES_AXES)
@pytest.mark.parametrize("kind", LOGIT_KINDS)
def test_entropy_backward(shape, axis, kind):
    rng = np.random.default_rng(6)
    x = awkward_logits(kind, shape, rng)
    h = F.entropy(x, axis=axis)
    dh = rng.normal(size=np.shape(h))
    dx = F.entropy_backward(dh, F.log_softmax(x, axis=axis), h, axis=axis)
    assert_matches_numerical(lambda x: np.sum(dh * F.entropy(x, axis=axis)), x, dx)


def test_backwards_with_minus_inf_logits_give_zero_there():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 5))
    x[0, 1] = x[2, [0, 3]] = x[3, :4] = -inf
    dy = rng.normal(size=x.shape)
    drow = rng.normal(size=4)
    # A -inf log-probability cannot be weighted by an upstream gradient in a finite loss.
    finite_mask = np.isfinite(x)
    dy_finite = np.where(finite_mask, dy, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, log_y, lse, h = F.softmax(x), F.log_softmax(x), F.logsumexp(x), F.entropy(x)
        grads = {
            "softmax": F.softmax_backward(dy, y),
            "log_softmax": F.log_softmax_backward(dy_finite, log_y),
            "logsumexp": F.logsumexp_backward(drow, x, lse),
            "entropy": F.entropy_backward(drow, log_y, h),
        }
    forwards = {
        "softmax": lambda x: np.sum(dy * F.softmax(x)),
        "log_softmax": lambda x: np.sum(dy_finite * np.where(finite_mask, F.log_softmax(x), 0)),
        "logsumexp": lambda x: np.sum(drow * F.logsumexp(x)),
        "entropy": lambda x: np.sum(drow * F.entropy(x)),
    }
    for name, dx in grads.items():
        assert np.isfinite(dx).all(), name
        assert_array_equal(dx[np.isneginf(x)], 0)
        assert_matches_numerical(forwards[name], x, dx, indices=np.flatnonzero(finite_mask))


@pytest.mark.parametrize("dtype", DTYPES)
def test_backwards_are_finite_and_silent_at_huge_logits(dtype):
    rng = np.random.default_rng(8)
    x = rng.choice([-1e4, 0.0, 1e4], size=(5, 6)).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    drow = rng.normal(size=5).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, log_y, lse, h = F.softmax(x), F.log_softmax(x), F.logsumexp(x), F.entropy(x)
        grads = [
            F.softmax_backward(dy, y),
            F.log_softmax_backward(dy, log_y),
            F.logsumexp_backward(drow, x, lse),
            F.entropy_backward(drow, log_y, h),
        ]
    for dx in grads:
        assert dx.dtype == dtype and np.isfinite(dx).all()
    # Softmax-type gradients are orthogonal to the all-ones direction (shift invariance).
    assert_allclose(grads[0].sum(axis=1), 0, atol=1e-5)
    assert_allclose(grads[3].sum(axis=1), 0, atol=1e-5)
