import tracemalloc

import numpy as np
import pytest

from npclust import nn
from npclust.optim import SGD, Adam, AdamW

SHAPES = [(4, 3), (3,), (2, 5), (1,)]
N_STEPS = 7


# ------------------------------------------------------------------ test fixtures


def _initial_arrays(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for shape in SHAPES]


def _noise(n_steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=shape) for shape in SHAPES] for _ in range(n_steps)]


def _gradient(data, noise):
    """A gradient that depends on the current parameters, so errors compound over steps."""
    return 0.5 * data + noise


def _make_parameters(arrays, flat, dtype=np.float64):
    """Parameters holding copies of ``arrays``; with ``flat``, moved into one FlatBuffer."""
    parameters = [nn.Parameter(np.array(array, dtype=dtype)) for array in arrays]
    if flat:
        nn.flatten_parameters(parameters)
    return parameters


def _run(optimizer, parameters, noise):
    for step_noise in noise:
        for parameter, parameter_noise in zip(parameters, step_noise):
            parameter.grad[...] = _gradient(parameter.data, parameter_noise)
        optimizer.step()
    return [parameter.data.copy() for parameter in parameters]


# --------------------------------------------- reference rules, from the published formulas


def _reference_sgd(arrays, noise, lr, momentum=0.0, dampening=0.0, nesterov=False,
                   weight_decay=0.0):
    params = [np.array(array, dtype=np.float64) for array in arrays]
    buffers = [None] * len(params)
    for step, step_noise in enumerate(noise):
        for i in range(len(params)):
            g = _gradient(params[i], step_noise[i])
            g = g + weight_decay * params[i]
            if momentum != 0:
                if step == 0:
                    buffers[i] = g.copy()
                else:
                    buffers[i] = momentum * buffers[i] + (1 - dampening) * g
                g = g + momentum * buffers[i] if nesterov else buffers[i]
            params[i] = params[i] - lr * g
    return params


def _reference_adam(arrays, noise, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                    decoupled=False):
    beta1, beta2 = betas
    params = [np.array(array, dtype=np.float64) for array in arrays]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for step, step_noise in enumerate(noise, start=1):
        for i in range(len(params)):
            g = _gradient(params[i], step_noise[i])
            if decoupled:
                params[i] = params[i] * (1 - lr * weight_decay)
            else:
                g = g + weight_decay * params[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat_scale = 1 / (1 - beta1**step)
            denom = np.sqrt(v[i]) / np.sqrt(1 - beta2**step) + eps
            params[i] = params[i] - lr * m_hat_scale * m[i] / denom
    return params


CASES = {
    "sgd": (SGD, dict(lr=0.1), _reference_sgd),
    "sgd_weight_decay": (SGD, dict(lr=0.1, weight_decay=0.05), _reference_sgd),
    "sgd_momentum": (SGD, dict(lr=0.05, momentum=0.9), _reference_sgd),
    "sgd_momentum_dampening_decay": (
        SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.02), _reference_sgd
    ),
    "sgd_nesterov_decay": (
        SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), _reference_sgd
    ),
    "adam": (Adam, dict(lr=0.01), _reference_adam),
    "adam_l2_betas": (
        Adam, dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), _reference_adam
    ),
    "adamw": (AdamW, dict(lr=0.01), lambda a, n, **kw: _reference_adam(
        a, n, weight_decay=1e-2, decoupled=True, **kw)),
    "adamw_strong_decay": (AdamW, dict(lr=0.01, weight_decay=0.5), lambda a, n, **kw: _reference_adam(
        a, n, decoupled=True, **kw)),
}


# --------------------------------------------------------------------- update rules


@pytest.mark.parametrize("flat", [False, True], ids=["per_parameter", "flat"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_update_rule_matches_reference(case, flat):
    optimizer_class, hyperparameters, reference = CASES[case]
    arrays, noise = _initial_arrays(), _noise(N_STEPS)
    parameters = _make_parameters(arrays, flat)
    optimizer = optimizer_class(parameters, **hyperparameters)
    assert optimizer.uses_flat_buffer is flat
    result = _run(optimizer, parameters, noise)
    expected = reference(arrays, noise, **hyperparameters)
    for got, want, initial in zip(result, expected, arrays):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        assert not np.allclose(got, initial), "the optimizer did not move the parameters"
    assert optimizer.step_count == N_STEPS


@pytest.mark.parametrize("case", sorted(CASES))
def test_flat_and_per_parameter_paths_agree_bit_for_bit(case):
    optimizer_class, hyperparameters, _ = CASES[case]
    arrays, noise = _initial_arrays(), _noise(N_STEPS)
    results = []
    for flat in (False, True):
        parameters = _make_parameters(arrays, flat)
        results.append(_run(optimizer_class(parameters, **hyperparameters), parameters, noise))
    for per_parameter, flat in zip(*results):
        np.testing.assert_array_equal(per_parameter, flat)


def test_gradient_array_is_not_modified_by_weight_decay():
    parameters = _make_parameters(_initial_arrays(), flat=True)
    for parameter in parameters:
        parameter.grad[...] = 1.0
    SGD(parameters, lr=0.1, momentum=0.9, weight_decay=0.5, nesterov=True).step()
    Adam(parameters, weight_decay=0.5).step()
    assert all((parameter.grad == 1.0).all() for parameter in parameters)


def test_learning_rate_can_change_between_steps():
    parameters = _make_parameters(_initial_arrays(), flat=False)
    optimizer = SGD(parameters, lr=0.1)
    optimizer.lr = 0.0
    before = [parameter.data.copy() for parameter in parameters]
    _run(optimizer, parameters, _noise(2))
    for parameter, data in zip(parameters, before):
        np.testing.assert_array_equal(parameter.data, data)


def test_momentum_buffer_starts_at_gradient_when_momentum_switched_on_later():
    # PyTorch creates the buffer on the first step that uses momentum.
    arrays, noise = _initial_arrays(), _noise(4)
    parameters = _make_parameters(arrays, flat=True)
    optimizer = SGD(parameters, lr=0.1, dampening=0.5)
    _run(optimizer, parameters, noise[:2])
    optimizer.momentum = 0.9
    result = _run(optimizer, parameters, noise[2:])
    midway = _reference_sgd(arrays, noise[:2], lr=0.1)
    expected = _reference_sgd(midway, noise[2:], lr=0.1, momentum=0.9, dampening=0.5)
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12)


# ------------------------------------------------------------------------ layouts


def test_views_with_a_gap_use_per_parameter_path_and_stay_correct():
    buffer, grad_buffer = np.zeros(20), np.zeros(20)
    parameters = [nn.Parameter(np.zeros(1)) for _ in range(2)]
    parameters[0].data, parameters[0].grad = buffer[0:6].reshape(2, 3), grad_buffer[0:6].reshape(2, 3)
    parameters[1].data, parameters[1].grad = buffer[8:12], grad_buffer[6:10]  # gap in data only
    for parameter in parameters:
        parameter.grad[...] = 1.0
    optimizer = SGD(parameters, lr=0.5)
    assert not optimizer.uses_flat_buffer
    optimizer.step()
    assert (buffer[0:6] == -0.5).all() and (buffer[8:12] == -0.5).all()
    assert (buffer[6:8] == 0).all() and (buffer[12:] == 0).all()


def test_views_tiling_a_buffer_without_flatten_parameters_use_per_parameter_path():
    """The fast path is asked for through flatten_parameters, never guessed from addresses."""
    buffer, grad_buffer = np.zeros(6), np.zeros(6)
    parameters = [nn.Parameter(np.zeros(1)) for _ in range(2)]
    parameters[0].data, parameters[0].grad = buffer[0:3], grad_buffer[0:3]
    parameters[1].data, parameters[1].grad = buffer[3:6], grad_buffer[3:6]
    assert not SGD(parameters, lr=0.1).uses_flat_buffer


def test_flattened_parameters_out_of_order_use_per_parameter_path():
    parameters = [nn.Parameter(np.zeros(3)) for _ in range(2)]
    nn.flatten_parameters(parameters)
    assert not SGD(parameters[::-1], lr=0.1).uses_flat_buffer
    assert SGD(parameters, lr=0.1).uses_flat_buffer


def test_flat_run_may_start_inside_the_buffer():
    parameters = [nn.Parameter(np.zeros(size)) for size in (2, 2, 3, 3)]
    buffer = nn.flatten_parameters(parameters)
    buffer.grad[2:7] = 1.0
    optimizer = SGD(parameters[1:3], lr=1.0)
    assert optimizer.uses_flat_buffer
    optimizer.step()
    np.testing.assert_array_equal(buffer.data, [0, 0, -1, -1, -1, -1, -1, 0, 0, 0])


def test_parameters_from_two_buffers_and_a_lone_one_each_take_their_path():
    """As DEC's self-training: encoder parameters (one run of a buffer shared with the
    decoder) and a separate centers parameter."""
    arrays, noise = _initial_arrays(), _noise(N_STEPS)
    parameters = _make_parameters(arrays, flat=False)
    nn.flatten_parameters(parameters[:2])
    nn.flatten_parameters(parameters[2:3])
    optimizer = Adam(parameters, lr=0.01)
    assert [run.flat for run in optimizer._runs] == [True, True, False]
    plain_parameters = _make_parameters(arrays, flat=False)
    expected = _run(Adam(plain_parameters, lr=0.01), plain_parameters, noise)
    for got, want in zip(_run(optimizer, parameters, noise), expected):
        np.testing.assert_array_equal(got, want)


def test_module_flatten_parameters_enables_flat_path():
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1))
    assert not Adam(model.parameters()).uses_flat_buffer
    model.flatten_parameters()
    assert Adam(model.parameters()).uses_flat_buffer


def test_optimizer_follows_parameters_rebound_after_construction():
    arrays, noise = _initial_arrays(), _noise(N_STEPS)
    parameters = _make_parameters(arrays, flat=False)
    optimizer = Adam(parameters, lr=0.01)
    _run(optimizer, parameters, noise[:3])
    # What Module.flatten_parameters() does: new arrays behind the same Parameters.
    nn.flatten_parameters(parameters)
    result = _run(optimizer, parameters, noise[3:])
    assert optimizer.uses_flat_buffer
    expected = _reference_adam(arrays, noise, lr=0.01)
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_zero_grad_clears_gradients_in_place():
    for flat in (False, True):
        parameters = _make_parameters(_initial_arrays(), flat)
        grads = [parameter.grad for parameter in parameters]
        for grad in grads:
            grad[...] = 3.0
        SGD(parameters, lr=0.1).zero_grad()
        assert all(parameter.grad is grad and not grad.any() for parameter, grad in zip(parameters, grads))


def test_frozen_parameter_makes_step_raise():
    model = nn.Linear(3, 2, rng=0)
    optimizer = SGD(model.parameters(), lr=0.1)
    model.requires_grad_(False)
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        optimizer.step()


# --------------------------------------------------------------------- state dicts


@pytest.mark.parametrize("case", ["sgd_nesterov_decay", "sgd_momentum_dampening_decay", "adam_l2_betas",
                                  "adamw"])
@pytest.mark.parametrize("save_flat, load_flat", [(True, True), (True, False), (False, True)])
def test_state_dict_round_trip_resumes_identically(case, save_flat, load_flat, tmp_path):
    optimizer_class, hyperparameters, _ = CASES[case]
    arrays, noise = _initial_arrays(), _noise(N_STEPS)
    parameters = _make_parameters(arrays, save_flat)
    optimizer = optimizer_class(parameters, **hyperparameters)
    _run(optimizer, parameters, noise[:3])

    path = tmp_path / "optimizer.npz"
    np.savez(path, **optimizer.state_dict())
    resumed_parameters = _make_parameters([parameter.data for parameter in parameters], load_flat)
    # Different hyper-parameters at construction: loading must restore the saved ones.
    resumed = optimizer_class(resumed_parameters, lr=123.0)
    with np.load(path) as saved:
        resumed.load_state_dict(saved)
    assert resumed.step_count == 3 and resumed.lr == hyperparameters["lr"]

    continued = _run(optimizer, parameters, noise[3:])
    from_checkpoint = _run(resumed, resumed_parameters, noise[3:])
    for a, b in zip(continued, from_checkpoint):
        np.testing.assert_array_equal(a, b)


def test_state_dict_layout():
    parameters = _make_parameters(_initial_arrays(), flat=True)
    optimizer = Adam(parameters, lr=0.01, betas=(0.8, 0.9))
    assert optimizer.state_dict() == {
        "step": 0, "lr": 0.01, "betas": pytest.approx(np.array([0.8, 0.9])), "eps": 1e-8,
        "weight_decay": 0.0,
    }
    _run(optimizer, parameters, _noise(1))
    state = optimizer.state_dict()
    expected_keys = {"step", "lr", "betas", "eps", "weight_decay"}
    expected_keys |= {f"{name}.{i}" for name in ("exp_avg", "exp_avg_sq") for i in range(len(SHAPES))}
    assert set(state) == expected_keys
    for i, shape in enumerate(SHAPES):
        assert state[f"exp_avg.{i}"].shape == shape
    # A copy: stepping on does not change a saved state dict.
    saved = state["exp_avg.0"].copy()
    _run(optimizer, parameters, _noise(1, seed=5))
    np.testing.assert_array_equal(state["exp_avg.0"], saved)


def test_load_state_dict_rejects_mismatches():
    parameters = _make_parameters(_initial_arrays(), flat=False)
    optimizer = Adam(parameters)
    _run(optimizer, parameters, _noise(1))
    state = optimizer.state_dict()
    with pytest.raises(KeyError, match="momentum"):
        Adam(parameters).load_state_dict({**state, "momentum": 0.9})
    with pytest.raises(KeyError, match="lr"):
        Adam(parameters).load_state_dict({k: v for k, v in state.items() if k != "lr"})
    with pytest.raises(KeyError, match="exp_avg.3"):
        Adam(parameters).load_state_dict({k: v for k, v in state.items() if k != "exp_avg.3"})
    with pytest.raises(ValueError, match="shape mismatch"):
        Adam(parameters).load_state_dict({**state, "exp_avg.0": np.zeros(2)})
    with pytest.raises(ValueError, match="beta"):
        Adam(parameters).load_state_dict({**state, "betas": np.array([0.9, 1.0])})


# ------------------------------------------------------------ memory and precision


@pytest.mark.parametrize("case", ["sgd_nesterov_decay", "sgd_momentum_dampening_decay",
                                  "adam_l2_betas", "adamw"])
def test_flat_step_allocates_nothing_after_the_first(case):
    optimizer_class, hyperparameters, _ = CASES[case]
    n_elements = 100_000  # any whole-buffer temporary would be 800 kB
    parameters = _make_parameters([np.ones(n_elements // 2), np.ones(n_elements // 2)], flat=True)
    for parameter in parameters:
        parameter.grad[...] = 0.1
    optimizer = optimizer_class(parameters, **hyperparameters)
    assert optimizer.uses_flat_buffer
    optimizer.step()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(5):
            optimizer.step()
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert peak < 4096, f"a step allocated {peak} bytes"


@pytest.mark.parametrize("flat", [False, True], ids=["per_parameter", "flat"])
@pytest.mark.parametrize("case", ["sgd_nesterov_decay", "adam_l2_betas", "adamw"])
def test_float32_parameters_stay_float32(case, flat):
    optimizer_class, hyperparameters, reference = CASES[case]
    arrays, noise = _initial_arrays(), _noise(N_STEPS)
    parameters = _make_parameters(arrays, flat, dtype=np.float32)
    optimizer = optimizer_class(parameters, **hyperparameters)
    result = _run(optimizer, parameters, [[n.astype(np.float32) for n in step] for step in noise])
    assert all(parameter.data.dtype == np.float32 for parameter in parameters)
    assert all(array.dtype == np.float32 for arrays_ in optimizer.state.values() for array in arrays_)
    expected = reference(arrays, noise, **hyperparameters)
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("flat", [False, True])
def test_adam_with_a_vanishing_step_size_stays_finite(flat):
    parameter = nn.Parameter(np.ones(4, dtype=np.float32))
    if flat:
        nn.flatten_parameters([parameter])
    parameter.grad[...] = [1.0, 0.0, -1.0, 1e-3]
    optimizer = Adam([parameter], lr=1e-44)
    optimizer.step()
    assert np.all(np.isfinite(parameter.data))
    np.testing.assert_array_equal(parameter.data, np.ones(4, dtype=np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer_class, weight_decay", [(Adam, 0.0), (Adam, 0.01), (AdamW, 0.01)])
def test_fused_adam_on_a_large_flat_buffer_equals_the_plain_rule(dtype, optimizer_class,
                                                                  weight_decay):
    """The cache-blocked, in-place fast path is bit for bit the plain rule."""
    rng = np.random.default_rng(8)
    starts = [rng.normal(size=size).astype(dtype) for size in (200_003, 1, 70_000)]  # ragged blocks
    gradients = [[rng.normal(size=start.size).astype(dtype) for start in starts] for _ in range(3)]
    results = []
    for flat in (True, False):
        parameters = [nn.Parameter(start.copy()) for start in starts]
        if flat:
            nn.flatten_parameters(parameters)
        optimizer = optimizer_class(parameters, lr=0.01, weight_decay=weight_decay)
        assert optimizer.uses_flat_buffer is flat
        for step_gradients in gradients:
            for parameter, gradient in zip(parameters, step_gradients):
                parameter.grad[...] = gradient
            optimizer.step()
        results.append(([p.data.copy() for p in parameters], optimizer.state_dict()))
    (data_flat, state_flat), (data_plain, state_plain) = results
    for got, want in zip(data_flat, data_plain):
        np.testing.assert_array_equal(got, want)
    for key in state_plain:
        np.testing.assert_array_equal(state_flat[key], state_plain[key])


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda p: SGD(p, lr=-0.1), "-0.1"),
        (lambda p: SGD(p, lr=float("nan")), "nan"),
        (lambda p: SGD(p, lr=0.1, momentum=-0.5), "-0.5"),
        (lambda p: SGD(p, lr=0.1, weight_decay=-1.0), "-1.0"),
        (lambda p: SGD(p, lr=0.1, nesterov=True),
         r"^Nesterov momentum requires a momentum and zero dampening, got momentum=0\.0, "
         r"dampening=0\.0$"),
        (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
        (lambda p: Adam(p, lr=-1e-3), "-0.001"),
        (lambda p: Adam(p, betas=(1.0, 0.999)), "index 0: 1.0"),
        (lambda p: Adam(p, betas=(0.9, -0.1)), "index 1: -0.1"),
        (lambda p: Adam(p, betas=(0.9,)), "pair"),
        (lambda p: Adam(p, eps=-1e-8), "-1e-08"),
        (lambda p: AdamW(p, weight_decay=-0.01), "-0.01"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_the_value(build, message):
    with pytest.raises(ValueError, match=message):
        build(_make_parameters(_initial_arrays(), flat=False))


@pytest.mark.parametrize("optimizer_class", [SGD, Adam, AdamW])
def test_empty_parameter_list_raises(optimizer_class):
    with pytest.raises(ValueError, match="empty"):
        optimizer_class([])


def test_non_parameters_and_duplicates_are_rejected():
    with pytest.raises(TypeError, match="Parameter"):
        SGD([np.zeros(3)], lr=0.1)
    parameter = nn.Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="more than once"):
        SGD([parameter, parameter], lr=0.1)


# ---------------------------------------------------------------- parity with torch


TORCH_CASES = {
    "sgd_momentum_decay": ("SGD", SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    "sgd_dampening": ("SGD", SGD, dict(lr=0.05, momentum=0.8, dampening=0.3)),
    "sgd_nesterov_decay": ("SGD", SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": ("Adam", Adam, dict(lr=0.01)),
    "adam_l2": ("Adam", Adam, dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    "adamw": ("AdamW", AdamW, dict(lr=0.01, weight_decay=0.05)),
}


@pytest.mark.parametrize("flat", [False, True], ids=["per_parameter", "flat"])
@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch_optim_for_20_steps(case, flat):
    torch = pytest.importorskip("torch")
    torch_name, optimizer_class, hyperparameters = TORCH_CASES[case]
    arrays, noise = _initial_arrays(), _noise(20)

    parameters = _make_parameters(arrays, flat)
    result = _run(optimizer_class(parameters, **hyperparameters), parameters, noise)

    tensors = [torch.tensor(array, dtype=torch.float64, requires_grad=True) for array in arrays]
    torch_optimizer = getattr(torch.optim, torch_name)(tensors, foreach=False, **hyperparameters)
    for step_noise in noise:
        for tensor, tensor_noise in zip(tensors, step_noise):
            tensor.grad = torch.from_numpy(_gradient(tensor.detach().numpy(), tensor_noise))
        torch_optimizer.step()
    for got, tensor in zip(result, tensors):
        np.testing.assert_allclose(got, tensor.detach().numpy(), rtol=1e-10, atol=1e-12)
