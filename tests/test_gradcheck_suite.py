import re

import pytest

from npclust import functional, losses, nn
from npclust.gradcheck import GradcheckResult
from npclust.gradcheck.suite import format_gradcheck_table, run_gradcheck_suite

# Public names with no gradient check of their own, and why. Anything public that is
# neither checked by the suite nor listed here fails the coverage tests below.
UNCHECKED_FUNCTIONAL = {
    "entropy_from_probs": "probability-space helper without a backward pass",
}
UNCHECKED_LOSSES = {
    "student_t_assignment": "no backward of its own; its gradient is checked through dec_loss",
    "target_distribution": "DEC holds the target constant, so it has no gradient",
}


@pytest.fixture(scope="module")
def results():
    return run_gradcheck_suite()


def component(name):
    """``"Linear(bias=False): weight"`` -> ``"Linear"``, ``"softmax (axis=0)"`` -> ``"softmax"``."""
    return re.match(r"\w+", name).group()


def checked_components(results):
    return {component(result.name) for result in results}


# ------------------------------------------------------------------ correctness


def test_every_gradient_passes(results):
    failed = [result for result in results if not result.passed]
    assert not failed, format_gradcheck_table(failed)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_gradient_passes_for_other_seeds(seed):
    failed = [result for result in run_gradcheck_suite(seed) if not result.passed]
    assert not failed, format_gradcheck_table(failed)


def test_results_are_named_uniquely_and_errors_are_small(results):
    names = [result.name for result in results]
    assert len(names) == len(set(names))
    assert all(isinstance(result, GradcheckResult) for result in results)
    # Central differences in float64 are ~1e-10 accurate: passing by a wide margin.
    assert max(result.max_abs_error for result in results) < 1e-6


def test_suite_is_reproducible():
    assert run_gradcheck_suite(seed=5) == run_gradcheck_suite(seed=5)


def test_expected_names_are_present(results):
    names = {result.name for result in results}
    for expected in [
        "Linear: weight", "Linear: bias", "Linear: input", "Linear(bias=False): weight",
        "BatchNorm1d(train): input", "BatchNorm1d(train, affine=False): input",
        "Dropout(eval): input", "Dropout(train, fixed mask): input",
        "Sequential MLP: 0.weight", "softmax", "softmax (logits +-30)",
        "softmax (tied logits)", "mutual_information (empty cluster): logits",
        "dec_loss: z", "dec_loss: centers", "dec_loss (near-empty cluster): centers",
    ]:
        assert expected in names


# --------------------------------------------------------------------- coverage


def test_covers_every_activation_in_the_table(results):
    missing = {cls.__name__ for cls in nn.ACTIVATIONS.values()} - checked_components(results)
    assert not missing, f"activations without a gradient check: {sorted(missing)}"


def test_covers_every_public_module_class(results):
    module_classes = {
        name for name in nn.__all__
        if isinstance(getattr(nn, name), type)
        and issubclass(getattr(nn, name), nn.Module)
        and getattr(nn, name) is not nn.Module
    }
    missing = module_classes - checked_components(results)
    assert not missing, f"modules without a gradient check: {sorted(missing)}"


def test_covers_every_public_functional(results):
    forwards = {name for name in functional.__all__ if not name.endswith("_backward")}
    with_vjp = {
        name.removesuffix("_backward") for name in functional.__all__ if name.endswith("_backward")
    }
    assert with_vjp <= checked_components(results)
    missing = forwards - checked_components(results) - set(UNCHECKED_FUNCTIONAL)
    assert not missing, f"functional functions without a gradient check: {sorted(missing)}"
    # The exemptions must stay true: no VJP, and still public.
    assert set(UNCHECKED_FUNCTIONAL) <= forwards - with_vjp


def test_covers_every_public_loss(results):
    missing = set(losses.__all__) - checked_components(results) - set(UNCHECKED_LOSSES)
    assert not missing, f"losses without a gradient check: {sorted(missing)}"
    assert set(UNCHECKED_LOSSES) <= set(losses.__all__) - checked_components(results)


def test_dec_loss_is_checked_for_both_points_and_centers(results):
    dec_results = [result for result in results if component(result.name) == "dec_loss"]
    wrt = {result.name.rsplit(": ", 1)[1] for result in dec_results}
    assert wrt == {"z", "centers"}


# ------------------------------------------------------------ catching mistakes


class ScaledBackwardTanh(nn.Tanh):
    """Tanh whose backward is off by 0.1 %: a bug the suite must catch."""

    def backward(self, dy, input_grad=True):
        return 1.001 * super().backward(dy, input_grad)


def test_activation_with_wrong_backward_is_reported_fail(monkeypatch):
    monkeypatch.setitem(nn.ACTIVATIONS, "scaled_tanh", ScaledBackwardTanh)
    by_name = {result.name: result for result in run_gradcheck_suite()}
    assert not by_name["ScaledBackwardTanh: input"].passed
    assert by_name["Tanh: input"].passed
    assert "ScaledBackwardTanh: input" in format_gradcheck_table(by_name.values())


def test_layer_with_wrong_parameter_gradient_is_reported_fail(monkeypatch):
    original = nn.Linear.backward

    def backward_dropping_bias_gradient(self, dy, input_grad=True):
        bias_grad = None if self.bias is None else self.bias.grad.copy()
        dx = original(self, dy, input_grad)
        if bias_grad is not None:
            self.bias.grad[...] = bias_grad  # forgets to accumulate db
        return dx

    monkeypatch.setattr(nn.Linear, "backward", backward_dropping_bias_gradient)
    failed = {result.name for result in run_gradcheck_suite() if not result.passed}
    assert "Linear: bias" in failed
    assert "Linear: weight" not in failed


def test_functional_vjp_with_dropped_term_is_reported_fail(monkeypatch):
    # The Jacobian's diagonal alone, y * dy, misses the -y y^T part of softmax's.
    monkeypatch.setattr(functional, "softmax_backward", lambda dy, y, axis=-1: y * dy)
    failed = {result.name for result in run_gradcheck_suite() if not result.passed}
    assert "softmax" in failed


def test_loss_with_wrong_gradient_is_reported_fail(monkeypatch):
    original = losses.dec_loss

    def dec_loss_with_halved_center_gradient(z, centers, p, alpha=1.0):
        loss, dz, dcenters = original(z, centers, p, alpha)
        return loss, dz, 0.5 * dcenters

    monkeypatch.setattr(losses, "dec_loss", dec_loss_with_halved_center_gradient)
    failed = {result.name for result in run_gradcheck_suite() if not result.passed}
    assert "dec_loss: centers" in failed
    assert "dec_loss: z" not in failed


# ------------------------------------------------------------------------ table


def test_table_has_columns_one_row_per_result_and_marks_failures():
    table = format_gradcheck_table([
        GradcheckResult("Linear: weight", 1.5e-10, 2.0e-9, True),
        GradcheckResult("broken: x", 0.25, 0.5, False),
        GradcheckResult("nan: x", float("inf"), float("inf"), False),
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["component", "max", "abs", "error", "max", "rel", "error", "result"]
    assert lines[2].split() == ["Linear:", "weight", "1.50e-10", "2.00e-09", "PASS"]
    assert lines[3].split() == ["broken:", "x", "2.50e-01", "5.00e-01", "FAIL"]
    assert lines[4].split() == ["nan:", "x", "inf", "inf", "FAIL"]
    assert lines[-1] == "3 gradients checked, 2 failed"
    # Columns line up: every row has the header's width.
    assert len({len(line) for line in lines[:-1]}) == 1


def test_table_of_the_suite_reports_no_failure(results):
    table = format_gradcheck_table(results)
    assert "FAIL" not in table
    assert len(table.splitlines()) == len(results) + 3
    assert table.endswith(f"{len(results)} gradients checked, 0 failed")


def test_table_of_no_results():
    assert format_gradcheck_table([]).splitlines()[-1] == "0 gradients checked, 0 failed"
