import numpy as np
import pytest

from npclust import nn
from npclust.gradcheck import (
    GradcheckResult,
    check_function,
    check_gradient,
    check_module,
    numerical_gradient,
)


def _quadratic_form(matrix):
    """f(x) = x^T A x with gradient (A + A^T) x, for x of shape (n,)."""
    return (lambda x: x @ matrix @ x), (lambda x: (matrix + matrix.T) @ x)


def _cubic(x):
    """f(x) = sum(x^3) + x_00 x_11 x_12 on a (2, 3) array."""
    return np.sum(x**3) + x[0, 0] * x[1, 1] * x[1, 2]


def _cubic_gradient(x):
    gradient = 3 * x**2
    gradient[0, 0] += x[1, 1] * x[1, 2]
    gradient[1, 1] += x[0, 0] * x[1, 2]
    gradient[1, 2] += x[0, 0] * x[1, 1]
    return gradient


# ----------------------------------------------------------------- numerical_gradient


def test_numerical_gradient_of_quadratic_is_exact_up_to_rounding():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(6, 6))
    f, gradient = _quadratic_form(matrix)
    x = rng.normal(size=6)
    # The third derivative of a quadratic is 0, so central differences have no
    # truncation error: only rounding (~1e-16 * |f| / eps ~ 1e-10) remains.
    np.testing.assert_allclose(numerical_gradient(f, x), gradient(x), rtol=0, atol=1e-8)


def test_numerical_gradient_of_cubic_has_order_eps_squared_error():
    x = np.random.default_rng(1).normal(size=(2, 3))
    error_coarse = np.abs(numerical_gradient(_cubic, x, eps=1e-3) - _cubic_gradient(x)).max()
    error_default = np.abs(numerical_gradient(_cubic, x) - _cubic_gradient(x)).max()
    # sum(x^3) has third derivative 6, so the truncation error is exactly eps^2 per entry
    # (the cross term is linear in each coordinate and contributes none).
    assert error_coarse == pytest.approx(1e-6, rel=1e-3)
    assert error_default < 1e-8


def test_numerical_gradient_restores_every_entry_bit_for_bit():
    rng = np.random.default_rng(2)
    # Values where x + eps - eps != x in floating point, so a restore by subtraction
    # would be caught.
    x = rng.normal(size=(4, 5)) * 10.0 ** rng.integers(-8, 8, size=(4, 5))
    before = x.copy()
    numerical_gradient(lambda x: np.sum(np.sin(x)), x)
    assert np.array_equal(x.view(np.uint64), before.view(np.uint64))


def test_numerical_gradient_restores_entry_when_function_raises():
    x = np.array([1.0, 0.1, 3.0])
    before = x.copy()
    calls = []

    def fails_on_third_call(x):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return float(np.sum(x))

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(fails_on_third_call, x)
    assert np.array_equal(x, before)


def test_numerical_gradient_sees_perturbation_through_other_references():
    parameter = nn.Parameter(np.array([[1.0, -2.0], [0.5, 3.0]]))

    def loss_reading_parameter(_):
        return np.sum(parameter.data**2)

    gradient = numerical_gradient(loss_reading_parameter, parameter.data)
    np.testing.assert_allclose(gradient, 2 * parameter.data, atol=1e-8)


def test_numerical_gradient_on_non_contiguous_view():
    base = np.random.default_rng(3).normal(size=(5, 4))
    x = base.T[::2]  # shape (2, 5), strided
    gradient = numerical_gradient(lambda x: np.sum(x**3), x)
    np.testing.assert_allclose(gradient, 3 * x**2, atol=1e-8)
    assert gradient.shape == x.shape


def test_numerical_gradient_on_zero_dimensional_array():
    x = np.array(2.0)
    assert numerical_gradient(lambda x: x**3, x) == pytest.approx(12.0, rel=1e-9)


def test_probing_given_indices_leaves_others_nan():
    x = np.random.default_rng(4).normal(size=(3, 4))
    gradient = numerical_gradient(lambda x: np.sum(x**3), x, indices=[0, 5, 11])
    probed = np.zeros(12, dtype=bool)
    probed[[0, 5, 11]] = True
    np.testing.assert_allclose(gradient.ravel()[probed], 3 * x.ravel()[probed] ** 2, atol=1e-8)
    assert np.isnan(gradient.ravel()[~probed]).all()


def test_probing_random_subset_is_reproducible_and_of_requested_size():
    x = np.random.default_rng(5).normal(size=(10, 10))
    first = numerical_gradient(lambda x: np.sum(x**2), x, n_probes=7, rng=11)
    second = numerical_gradient(lambda x: np.sum(x**2), x, n_probes=7, rng=11)
    assert np.isfinite(first).sum() == 7
    np.testing.assert_array_equal(np.isnan(first), np.isnan(second))
    finite = np.isfinite(first)
    np.testing.assert_allclose(first[finite], 2 * x[finite], atol=1e-8)


def test_probing_more_coordinates_than_exist_probes_all():
    x = np.ones(3)
    assert np.isfinite(numerical_gradient(lambda x: np.sum(x), x, n_probes=10)).all()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(indices=[0], n_probes=1), ValueError),
        (dict(indices=[12]), ValueError),
        (dict(indices=[-1]), ValueError),
        (dict(n_probes=0), ValueError),
        (dict(eps=0.0), ValueError),
    ],
)
def test_numerical_gradient_rejects_bad_options(kwargs, error):
    with pytest.raises(error):
        numerical_gradient(lambda x: np.sum(x), np.zeros((3, 4)), **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64])
def test_numerical_gradient_refuses_non_float64(dtype):
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda x: np.sum(x), np.zeros(3, dtype=dtype))


def test_numerical_gradient_refuses_read_only_and_non_array_input():
    x = np.zeros(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numerical_gradient(lambda x: np.sum(x), x)
    with pytest.raises(TypeError, match="ndarray"):
        numerical_gradient(lambda x: np.sum(x), [0.0, 1.0])


def test_numerical_gradient_refuses_non_scalar_function():
    with pytest.raises(ValueError, match="scalar"):
        numerical_gradient(lambda x: x * 2, np.zeros(3))


# ------------------------------------------------------------------- check_gradient


def test_check_gradient_passes_for_correct_gradient():
    x = np.random.default_rng(6).normal(size=(2, 3))
    result = check_gradient(_cubic, x, _cubic_gradient(x), name="cubic")
    assert isinstance(result, GradcheckResult)
    assert result.passed and result.name == "cubic"
    assert result.max_abs_error < 1e-8
    assert result.max_rel_error < 1e-7


@pytest.mark.parametrize("entry", [(0, 0), (1, 2)])
def test_check_gradient_fails_for_gradient_off_by_1e_3(entry):
    x = np.random.default_rng(7).normal(size=(2, 3))
    wrong = _cubic_gradient(x)
    wrong[entry] += 1e-3
    result = check_gradient(_cubic, x, wrong)
    assert not result.passed
    assert result.max_abs_error == pytest.approx(1e-3, rel=1e-4)


def test_check_gradient_criterion_uses_atol_for_zero_gradients():
    x = np.zeros(4)
    # True gradient 0; an analytic value of 1e-9 is numerical noise level, not a bug.
    result = check_gradient(lambda x: np.sum(x**2), x, np.full(4, 1e-9))
    assert result.passed
    assert result.max_rel_error == pytest.approx(1.0)
    assert not check_gradient(lambda x: np.sum(x**2), x, np.full(4, 1e-6)).passed


def test_check_gradient_fails_on_nan_gradient():
    x = np.ones(3)
    analytic = np.array([2.0, np.nan, 2.0])
    result = check_gradient(lambda x: np.sum(x**2), x, analytic)
    assert not result.passed
    assert result.max_abs_error == np.inf


def test_check_gradient_on_random_subset_catches_error_when_probed():
    x = np.random.default_rng(8).normal(size=50)
    wrong = 2 * x
    wrong[17] += 1e-2
    assert not check_gradient(lambda x: np.sum(x**2), x, wrong, indices=[3, 17]).passed
    assert check_gradient(lambda x: np.sum(x**2), x, wrong, indices=[3, 18]).passed
    assert check_gradient(lambda x: np.sum(x**2), x, 2 * x, n_probes=5, rng=0).passed


def test_check_gradient_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        check_gradient(lambda x: np.sum(x), np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------- check_function


def _weighted_inner_product(a, b, labels):
    """f(a, b) = sum(a * b * labels) with gradients b * labels and a * labels."""
    return np.sum(a * b * labels), b * labels, a * labels


def test_check_function_checks_each_returned_gradient():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    labels = rng.integers(1, 4, size=(3, 2))
    results = check_function(_weighted_inner_product, a, b, labels)
    assert [r.name for r in results] == ["arg0", "arg1"]
    assert all(r.passed for r in results)


def test_check_function_flags_the_input_with_the_wrong_gradient():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=4), rng.normal(size=4)

    def wrong_second_gradient(a, b):
        return np.sum(a * b), b, 1.01 * a

    results = check_function(wrong_second_gradient, a, b, names=["a", "b"])
    assert [(r.name, r.passed) for r in results] == [("a", True), ("b", False)]


def test_check_function_with_wrt_selects_inputs():
    rng = np.random.default_rng(11)
    labels, logits = rng.integers(0, 2, size=5), rng.normal(size=5)

    def gradient_for_second_argument(labels, logits):
        return np.sum(labels * logits**2), 2 * labels * logits

    (result,) = check_function(gradient_for_second_argument, labels, logits, wrt=[1])
    assert result.name == "arg1" and result.passed


def test_check_function_rejects_mismatched_wrt():
    with pytest.raises(ValueError, match="gradients"):
        check_function(lambda a: (np.sum(a), a), np.ones(2), wrt=[0, 1])


# --------------------------------------------------------------------- check_module


def _mlp_float64(rng):
    module = nn.Sequential(
        nn.Linear(4, 5, rng=rng), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3, rng=rng)
    ).to(np.float64)
    module[1].weight.data[...] = rng.uniform(0.5, 2.0, 5)
    module[1].bias.data[...] = rng.normal(size=5)
    return module


def test_check_module_passes_for_mlp_with_training_mode_batchnorm():
    rng = np.random.default_rng(12)
    module = _mlp_float64(rng)
    results = check_module(module, rng.normal(size=(6, 4)), rng=rng)
    assert [r.name for r in results] == [
        "input", "0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"
    ]
    assert all(r.passed for r in results), results


def test_check_module_restores_parameters_buffers_and_input():
    rng = np.random.default_rng(13)
    module = _mlp_float64(rng)
    x = rng.normal(size=(6, 4))
    x_before = x.copy()
    state_before = module.state_dict()
    check_module(module, x)
    for key, value in module.state_dict().items():
        assert np.array_equal(value, state_before[key]), key
    assert np.array_equal(x, x_before)


def test_check_module_leaves_analytic_gradient_in_grad():
    rng = np.random.default_rng(14)
    linear = nn.Linear(3, 2, rng=rng).to(np.float64)
    x = rng.normal(size=(4, 3))
    check_module(linear, x, rng=0)
    dy = np.random.default_rng(0).standard_normal((4, 2))
    np.testing.assert_allclose(linear.weight.grad, dy.T @ x, rtol=1e-12)


class _LinearWithWrongBiasGradient(nn.Linear):
    def backward(self, dy, input_grad=True):
        dx = super().backward(dy, input_grad)
        self.bias.grad *= 1.001
        return dx


def test_check_module_fails_exactly_the_wrong_component():
    rng = np.random.default_rng(15)
    module = _LinearWithWrongBiasGradient(3, 2, rng=rng).to(np.float64)
    results = check_module(module, rng.normal(size=(5, 3)))
    assert {r.name: r.passed for r in results} == {"input": True, "weight": True, "bias": False}


def test_check_module_skips_frozen_parameters():
    rng = np.random.default_rng(16)
    module = nn.Linear(3, 2, rng=rng).to(np.float64).requires_grad_(False)
    results = check_module(module, rng.normal(size=(4, 3)))
    assert [r.name for r in results] == ["input"] and results[0].passed


def test_check_module_with_probed_subset_and_flat_parameters():
    rng = np.random.default_rng(17)
    module = _mlp_float64(rng).flatten_parameters()
    results = check_module(module, rng.normal(size=(6, 4)), n_probes=3, rng=1)
    assert len(results) == 7 and all(r.passed for r in results)


def test_check_module_refuses_float32():
    module = nn.Linear(3, 2, rng=0)
    with pytest.raises(TypeError, match=r"\.to\(np\.float64\)"):
        check_module(module, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="float64"):
        check_module(module.to(np.float64), np.zeros((2, 3), dtype=np.float32))
