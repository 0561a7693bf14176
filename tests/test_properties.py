"""Property-based tests (hypothesis): random shapes, magnitudes and bytes.

* softmax rows sum to 1, log-sum-exp is shift invariant and bounded, entropies lie in
  [0, log n], every loss gradient is finite;
* input validation, the data-file reader and the model loader raise only their documented
  errors on arbitrary input.
"""

import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from npclust import functional as F  # noqa: E402
from npclust.cluster import load  # noqa: E402
from npclust.files.matrix import DataFileError, read_matrix  # noqa: E402
from npclust.losses import (  # noqa: E402
    cross_entropy,
    dec_loss,
    kl_div,
    mutual_information,
    student_t_assignment,
    target_distribution,
)
from npclust.validation import check_array  # noqa: E402

FAST = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
DTYPES = st.sampled_from([np.float32, np.float64])
MAGNITUDES = st.sampled_from([1e-6, 1.0, 30.0, 1e3, 1e4])


@st.composite
def logits(draw, min_dims=1, max_dims=4, min_side=1, max_side=6, allow_minus_inf=True,
           axis=None):
    """(x, axis): finite logits scaled by a random magnitude, optional -inf entries
    (never a whole slice along ``axis``, random unless given)."""
    dtype = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                                  max_side=max_side))
    unit = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1, 1)))
    x = (unit * draw(MAGNITUDES)).astype(dtype)
    if axis is None:
        axis = draw(st.integers(-len(shape), len(shape) - 1))
    if allow_minus_inf and draw(st.booleans()):
        mask = draw(hnp.arrays(np.bool_, shape))
        # Keep the maximum of every slice finite.
        keep = np.argmax(x, axis=axis)
        np.put_along_axis(mask, np.expand_dims(keep, axis), False, axis=axis)
        x[mask] = -np.inf
    return x, axis


def _eps(dtype):
    return float(np.finfo(dtype).eps)


@FAST
@given(logits())
def test_softmax_rows_sum_to_one(case):
    x, axis = case
    y = F.softmax(x, axis=axis)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=0, atol=8 * x.shape[axis] * _eps(x.dtype))
    np.testing.assert_array_equal(y[np.isneginf(x)], 0.0)


@FAST
@given(logits(), st.floats(-1e4, 1e4))
def test_logsumexp_shift_invariance(case, shift):
    x, axis = case
    shift = x.dtype.type(shift)
    lse = F.logsumexp(x, axis=axis).astype(np.float64)
    shifted = F.logsumexp(x + shift, axis=axis).astype(np.float64)
    # Tolerance: the rounding of x + shift and of the result, relative to their size.
    scale = np.max(np.abs(x[np.isfinite(x)]), initial=0.0) + abs(float(shift)) + 1.0
    np.testing.assert_allclose(shifted, lse + float(shift), rtol=0,
                               atol=16 * x.shape[axis] * _eps(x.dtype) * scale)


@FAST
@given(logits())
def test_logsumexp_bounds_and_softmax_consistency(case):
    x, axis = case
    lse = F.logsumexp(x, axis=axis, keepdims=True)
    top = np.max(x, axis=axis, keepdims=True)
    n = x.shape[axis]
    slack = 8 * _eps(x.dtype) * (np.abs(top) + 1)
    assert np.all(lse >= top - slack) and np.all(lse <= top + np.log(n) + slack)
    log_y = F.log_softmax(x, axis=axis)
    assert np.all(log_y <= 0)
    np.testing.assert_allclose(np.exp(log_y), F.softmax(x, axis=axis), rtol=1e-5 if
                               x.dtype == np.float32 else 1e-12, atol=1e-7)


@FAST
@given(logits())
def test_entropy_between_zero_and_log_n(case):
    x, axis = case
    h = F.entropy(x, axis=axis)
    assert np.isfinite(h).all()
    n = x.shape[axis]
    tolerance = 64 * n * _eps(x.dtype)
    assert np.all(h >= 0) and np.all(h <= np.log(n) + tolerance)


@FAST
@given(logits())
def test_backward_passes_are_finite(case):
    x, axis = case
    rng = np.random.default_rng(0)
    y, log_y = F.softmax(x, axis=axis), F.log_softmax(x, axis=axis)
    h, lse = F.entropy(x, axis=axis), F.logsumexp(x, axis=axis)
    dy = rng.standard_normal(x.shape).astype(x.dtype)
    dsoft = F.softmax_backward(dy, y, axis=axis)
    # The softmax is invariant to shifts: its VJP sums to 0 along the axis.
    np.testing.assert_allclose(dsoft.sum(axis=axis), 0.0, atol=64 * x.shape[axis] * _eps(x.dtype))
    for dx in (dsoft, F.log_softmax_backward(dy, log_y, axis=axis),
               F.entropy_backward(np.ones_like(h), log_y, h, axis=axis),
               F.logsumexp_backward(np.ones_like(lse), x, lse, axis=axis)):
        assert dx.shape == x.shape and np.isfinite(dx).all()


@FAST
@given(logits(min_dims=2, max_dims=2, axis=1), st.floats(0, 10))
def test_mutual_information_and_cross_entropy_gradients_finite(case, mu):
    x, _ = case
    loss, dlogits = mutual_information(x, mu=mu)
    assert np.isfinite(loss) and np.isfinite(dlogits).all() and dlogits.dtype == x.dtype
    labels = np.argmax(x, axis=1)
    loss, dlogits = cross_entropy(x, labels)
    assert np.isfinite(loss) and loss >= 0 and np.isfinite(dlogits).all()
    np.testing.assert_allclose(dlogits.sum(axis=1), 0.0, atol=64 * x.shape[1] * _eps(x.dtype))


@FAST
@given(logits(min_dims=2, max_dims=2, allow_minus_inf=False, axis=1), st.data())
def test_kl_div_non_negative_and_finite(case, data):
    a, _ = case
    b = data.draw(hnp.arrays(np.float64, a.shape, elements=st.floats(-1, 1)))
    b = (b * data.draw(MAGNITUDES)).astype(a.dtype)
    log_q, p = F.log_softmax(a, axis=1), F.softmax(b, axis=1)
    loss, dlog_q = kl_div(log_q, p)
    assert np.isfinite(loss) and loss >= -1e-5 and np.isfinite(dlog_q).all()


@FAST
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 5), MAGNITUDES, DTYPES,
       st.sampled_from([0.5, 1.0, 10.0, 100.0]), st.integers(0, 2 ** 32 - 1))
def test_dec_loss_gradients_finite(n, k, d, magnitude, dtype, alpha, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, d)) * magnitude).astype(dtype)
    centers = (rng.standard_normal((k, d)) * magnitude).astype(dtype)
    q = student_t_assignment(z, centers, alpha)
    assert np.isfinite(q).all()
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    p = target_distribution(q)
    assert np.isfinite(p).all()
    loss, dz, dcenters = dec_loss(z, centers, p, alpha)
    assert np.isfinite(loss) and loss >= -1e-5
    assert np.isfinite(dz).all() and np.isfinite(dcenters).all()


# --------------------------------------------------- validation and files
ANY_ARRAY = hnp.arrays(
    dtype=st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                    hnp.complex_number_dtypes(), hnp.boolean_dtypes(),
                    hnp.unicode_string_dtypes(), hnp.byte_string_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


@FAST
@given(ANY_ARRAY, st.sampled_from([np.float32, np.float64]))
def test_check_array_returns_finite_2d_or_raises_type_or_value_error(X, dtype):
    try:
        result = check_array(X, dtype=dtype)
    except (TypeError, ValueError) as error:
        assert str(error).startswith("X ") or "X" in str(error)
        return
    assert result.ndim == 2 and result.dtype == dtype and np.isfinite(result).all()
    assert result.shape == X.shape and result.size > 0


@FAST
@given(st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                   st.integers(-10 ** 40, 10 ** 40),
                                   st.text(max_size=4)), min_size=0, max_size=4),
                max_size=5))
def test_csv_reader_parses_or_raises_data_file_error(rows):
    text = "".join(",".join(str(cell) for cell in row) + "\n" for row in rows)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "data.csv"
        path.write_text(text, encoding="utf-8")
        try:
            X = read_matrix(path)
        except DataFileError as error:
            assert "data.csv" in str(error)
            return
    assert X.ndim == 2 and X.shape[0] >= 1 and np.isfinite(X).all()


@FAST
@given(st.binary(max_size=300), st.sampled_from([".csv", ".npy", ".npz"]))
def test_data_file_reader_on_random_bytes_raises_only_data_file_error(content, suffix):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"data{suffix}"
        path.write_bytes(content)
        try:
            X = read_matrix(path, mmap=False)
        except DataFileError:
            return
    assert X.ndim == 2 and np.isfinite(X).all()


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    from npclust.cluster import IMSAT

    X = np.random.default_rng(0).standard_normal((40, 3))
    path = tmp_path_factory.mktemp("model") / "model.npz"
    IMSAT(n_clusters=2, hidden_dims=(4,), epochs=1, batch_size=20, n_neighbors=2,
          random_state=0).fit(X).save(path)
    return path.read_bytes()


@FAST
@given(data=st.data())
def test_loader_on_damaged_model_files_raises_only_value_error(model_bytes, data):
    damaged = bytearray(model_bytes)
    how = data.draw(st.sampled_from(["flip", "truncate", "random"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            position = data.draw(st.integers(0, len(damaged) - 1))
            damaged[position] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        damaged = damaged[:data.draw(st.integers(0, len(damaged) - 1))]
    else:
        damaged = bytearray(data.draw(st.binary(max_size=200)))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.npz"
        path.write_bytes(bytes(damaged))
        try:
            model = load(path)
        except ValueError:
            return
    # A flip in bytes nothing reads (zip comments, padding) may leave a working model.
    assert model.predict(np.zeros((2, 3))).shape == (2,)


def test_model_bytes_fixture_is_a_zip(model_bytes, tmp_path):
    (tmp_path / "m.npz").write_bytes(model_bytes)
    assert zipfile.is_zipfile(tmp_path / "m.npz")
