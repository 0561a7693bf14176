"""Each estimator minimises what docs/methods.md says it minimises.

For every estimator and stage, one training step is taken through the estimator's own
code, and what it did is compared with what the documented objective asks for,
computed independently here: the loss written out in plain NumPy (its own forward
pass, its own softmax, its own KL), its parameter gradient by central finite
differences in float64, then Adam's documented first step. The quantities the method
holds fixed (P between target updates, p(x) and r_adv in VAT) are held fixed here, and
the ones it trains (DEC's centers) must move.
"""

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from npclust.cluster import DEC, IDEC, IMSAT
from npclust.cluster import dec as dec_module
from npclust.cluster.training import BatchStream, Run

N_SAMPLES, N_FEATURES = 12, 5
LR = 1e-3


@pytest.fixture
def x():
    return np.random.default_rng(4).normal(size=(N_SAMPLES, N_FEATURES))


# ---------------------------------------------------------------- written out
def linear(params, prefix, x):
    return x @ params[f"{prefix}.weight"].T + params[f"{prefix}.bias"]


def batch_norm(params, prefix, x, eps=1e-5):
    """Training mode: normalise with the batch's own mean and biased variance."""
    normalised = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
    return normalised * params[f"{prefix}.weight"] + params[f"{prefix}.bias"]


def imsat_logits(params, x):
    """IMSAT's network with one hidden layer: Linear -> BatchNorm1d -> ReLU -> Linear."""
    return linear(params, "3", np.maximum(batch_norm(params, "1", linear(params, "0", x)), 0.0))


def relu_stack(params, x, n_layers):
    """Linear layers 0, 2, 4, ... with ReLU between (none after the last)."""
    for index in range(n_layers):
        x = linear(params, str(2 * index), x)
        if index < n_layers - 1:
            x = np.maximum(x, 0.0)
    return x


def information_term(logits, mu):
    """H(Y|X) - mu * H(Y) from the docs: mean row entropy minus mu times the marginal's."""
    p = softmax(logits, axis=1)
    conditional = -np.mean(np.sum(p * log_softmax(logits, axis=1), axis=1))
    marginal = p.mean(axis=0)
    return conditional + mu * np.sum(marginal * np.log(marginal))


def kl_rows(p, log_q):
    """KL(P || Q) averaged over rows, P given as probabilities."""
    return np.sum(p * (np.log(p) - log_q)) / p.shape[0]


def student_t(z, centers, alpha):
    kernel = (1.0 + ((z[:, None, :] - centers[None]) ** 2).sum(axis=2) / alpha) ** (
        -(alpha + 1.0) / 2.0)
    return kernel / kernel.sum(axis=1, keepdims=True)


def finite_difference_gradient(loss, params, eps=1e-6):
    """d loss / d params for every array of ``params`` (a dict), by central differences."""
    gradient = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            saved = value[index]
            value[index] = saved + eps
            up = loss(params)
            value[index] = saved - eps
            down = loss(params)
            value[index] = saved
            grad[index] = (up - down) / (2 * eps)
        gradient[name] = grad
    return gradient


def adam_first_step(value, grad, lr=LR, betas=(0.9, 0.999), eps=1e-8):
    """Adam's documented update at step 1: bias-corrected moments m = g, v = g^2."""
    m = (1 - betas[0]) * grad / (1 - betas[0])
    v = (1 - betas[1]) * grad**2 / (1 - betas[1])
    return value - lr * m / (np.sqrt(v) + eps)


# ------------------------------------------------------------------ checking
def parameters_of(modules):
    """{"<module>/<key>": Parameter} of the given named modules."""
    return {f"{name}/{key}": parameter for name, module in modules.items()
            for key, parameter in module.named_parameters()}


def check_step(parameters, before, expected_grad):
    """The step's gradient matches the finite differences; the update is Adam's rule on it."""
    for name, parameter in parameters.items():
        np.testing.assert_allclose(parameter.grad, expected_grad[name], rtol=1e-5, atol=1e-8,
                                   err_msg=f"gradient of {name}")
        np.testing.assert_allclose(parameter.data, adam_first_step(before[name], expected_grad[name]),
                                   rtol=0, atol=1e-9, err_msg=f"update of {name}")
        assert not np.array_equal(parameter.data, before[name]), f"{name} did not move"


def weights(parameters, prefix):
    """Copies of the parameters under ``prefix/``, keyed without it."""
    return {key.split("/", 1)[1]: parameter.data.copy() for key, parameter in parameters.items()
            if key.startswith(prefix + "/")}


def first_stage_run(estimator, x, stage_name, rng):
    """A Run of ``estimator`` positioned at the start of the stage ``stage_name``."""
    model = estimator._build_model(x.shape[1], rng)
    run = Run(model, x, None, rng, estimator._fit_arrays(x, {}))
    stage = next(stage for stage in estimator._stages(x.shape[0]) if stage.name == stage_name)
    return run, stage


# -------------------------------------------------------------------- IMSAT
@pytest.mark.parametrize("vat", [False, True], ids=["information term", "with VAT"])
def test_imsat_step_follows_its_documented_objective(x, vat):
    imsat = IMSAT(n_clusters=3, hidden_dims=(4,), mu=4.0, lam=0.3, xi=0.5, eps_scale=0.5,
                  n_neighbors=3, lr=LR, dtype="float64", vat=vat)
    rng = np.random.default_rng(0)
    run, stage = first_stage_run(imsat, x, "train", rng)
    network = run.model["network"]
    run.optimizer = stage.optimizer(run.model)
    parameters = parameters_of({"network": network})
    before = {name: parameter.data.copy() for name, parameter in parameters.items()}
    radius = run.fit_arrays["vat_radius"] if vat else None
    probe = np.random.default_rng(7).standard_normal(x.shape)
    step_rng = np.random.default_rng(7)  # the estimator draws the same probe

    imsat._step(network, run.optimizer, x, radius, step_rng)

    params = {key.split("/", 1)[1]: value.copy() for key, value in before.items()}
    adversarial = vat_perturbation(params, x, probe, imsat.xi, radius) if vat else None

    def loss(params):
        logits = imsat_logits(params, x)
        value = imsat.lam * information_term(logits, imsat.mu)
        if vat:
            # p(x) and r_adv are constants of the objective: computed at the step's start.
            target = softmax(imsat_logits(start, x), axis=1)
            value += kl_rows(target, log_softmax(imsat_logits(params, x + adversarial), axis=1))
        return value

    start = {name: value.copy() for name, value in params.items()}
    expected = finite_difference_gradient(loss, params)
    check_step(parameters, before, {f"network/{key}": grad for key, grad in expected.items()})


def vat_perturbation(params, x, probe, xi, radius):
    """r_adv from the docs: one power iteration from the probe, scaled to each radius."""
    target = softmax(imsat_logits(params, x), axis=1)
    start = x + xi * probe / np.linalg.norm(probe, axis=1, keepdims=True)
    direction = finite_difference_gradient(
        lambda inputs: kl_rows(target, log_softmax(imsat_logits(params, inputs["x"]), axis=1)),
        {"x": start.copy()})["x"]
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return radius[:, None] * direction


# ------------------------------------------------------------------ DEC, IDEC
def autoencoder(estimator):
    """Small DEC/IDEC in float64: 5 -> 4 -> 2 latent, and back."""
    return estimator(n_clusters=3, hidden_dims=(4,), latent_dim=2, alpha=1.0, lr=LR,
                     pretrain_lr=LR, dtype="float64", corruption=0.25)


@pytest.mark.parametrize("estimator", [DEC, IDEC])
def test_pretraining_step_follows_the_reconstruction_objective(x, estimator):
    model = autoencoder(estimator)
    rng = np.random.default_rng(1)
    run, stage = first_stage_run(model, x, "pretrain", rng)
    run.optimizer = stage.optimizer(run.model)
    parameters = parameters_of({"encoder": run.model["encoder"], "decoder": run.model["decoder"]})
    before = {name: parameter.data.copy() for name, parameter in parameters.items()}
    mask_rng = np.random.default_rng(0)
    run.rng = np.random.default_rng(0)  # draws the same corruption mask
    run.batches = type("OneBatch", (), {"epoch": lambda self: [np.arange(N_SAMPLES)]})()

    stage.run_unit(run)

    # The documented denoising objective: entries zeroed with probability `corruption`,
    # survivors scaled by 1 / (1 - corruption), the clean input reconstructed.
    keep = mask_rng.random(x.shape) >= model.corruption
    corrupted = x * keep / (1 - model.corruption)

    def loss(params):
        z = relu_stack(params["encoder"], corrupted, 2)
        return np.mean((relu_stack(params["decoder"], z, 2) - x) ** 2)

    expected = grouped_gradient(loss, before, ("encoder", "decoder"))
    check_step(parameters, before, expected)


def grouped_gradient(loss, before, groups):
    """Finite-difference gradient of ``loss({group: {key: array}})`` at the weights
    ``before`` (keyed "group/key"), keyed the same way."""
    params = {group: {name.split("/", 1)[1]: value.copy() for name, value in before.items()
                      if name.startswith(group + "/")} for group in groups}
    flat = {f"{group}/{key}": value for group, arrays in params.items()
            for key, value in arrays.items()}
    return finite_difference_gradient(lambda _: loss(params), flat)


@pytest.mark.parametrize("estimator", [DEC, IDEC])
def test_self_training_step_follows_its_objective_with_p_fixed(x, estimator):
    model = autoencoder(estimator)
    rng = np.random.default_rng(2)
    run = Run(model._build_model(N_FEATURES, rng), x, None, rng, {})
    centers = np.random.default_rng(3).normal(size=(3, 2))
    model._initial_centers(run)
    run.model["centers"].data[...] = centers
    stage = next(stage for stage in model._stages(N_SAMPLES) if stage.name == "cluster")
    run.optimizer = stage.optimizer(run.model)
    target = np.random.default_rng(5).dirichlet(np.ones(3), size=N_SAMPLES)
    groups = {"encoder": run.model["encoder"], "decoder": run.model["decoder"]}
    parameters = parameters_of(groups if model._keeps_decoder else {"encoder": groups["encoder"]})
    parameters["centers/"] = run.model["centers"]
    before = {name: parameter.data.copy() for name, parameter in parameters.items()}
    decoder_before = run.model["decoder"].state_dict()

    model._self_training_step(run.model, run.optimizer, x, target)

    documented_weight = getattr(model, "gamma", 1.0)

    def loss(params):
        z = relu_stack(params["encoder"], x, 2)
        log_q = np.log(student_t(z, params["centers"][""], model.alpha))
        value = documented_weight * kl_rows(target, log_q)
        if model._keeps_decoder:
            value += np.mean((relu_stack(params["decoder"], z, 2) - x) ** 2)
        return value

    expected = grouped_gradient(loss, before, [*(
        ("encoder", "decoder") if model._keeps_decoder else ("encoder",)), "centers"])
    check_step(parameters, before, expected)
    if not model._keeps_decoder:  # DEC drops the decoder for self-training
        for key, value in run.model["decoder"].state_dict().items():
            np.testing.assert_array_equal(value, decoder_before[key])


@pytest.mark.parametrize("estimator", [DEC, IDEC])
def test_target_distribution_comes_from_the_whole_data_and_is_held_between_updates(
        monkeypatch, estimator):
    X = np.random.default_rng(8).normal(size=(60, N_FEATURES))
    model = estimator(n_clusters=3, hidden_dims=(4,), latent_dim=2, dtype="float64",
                      batch_size=16, update_interval=4, max_iter=8, tol=0.0)
    rng = np.random.default_rng(0)
    run = Run(model._build_model(N_FEATURES, rng), X, None, rng, {})
    model._initial_centers(run)
    stage = next(stage for stage in model._stages(X.shape[0]) if stage.name == "cluster")
    run.optimizer = stage.optimizer(run.model)
    run.batches = BatchStream(X.shape[0], model.batch_size, rng)
    stage.begin(run)
    seen = []
    original = dec_module.dec_loss

    def recording_dec_loss(z, centers, p, alpha):
        seen.append(p.copy())
        return original(z, centers, p, alpha)

    monkeypatch.setattr(dec_module, "dec_loss", recording_dec_loss)
    for _ in range(2):
        # P over the whole data, from the model as it stands at the update (Xie et al.).
        encoder = weights(parameters_of({"encoder": run.model["encoder"]}), "encoder")
        q = student_t(relu_stack(encoder, X, 2), run.model["centers"].data, model.alpha)
        weight = q**2 / q.sum(axis=0)
        expected_target = weight / weight.sum(axis=1, keepdims=True)
        seen.clear()
        stage.run_unit(run)
        assert len(seen) == model.update_interval
        for p in seen:
            # Each batch's P is made of rows of the whole-data P, not renormalised per batch.
            rows = ((p[:, None, :] - expected_target[None]) ** 2).sum(axis=2).argmin(axis=1)
            np.testing.assert_allclose(p, expected_target[rows], rtol=1e-10, atol=1e-12)
