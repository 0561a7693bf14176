import warnings

import numpy as np
import pytest
import scipy.special
from gradient_cases import LOGIT_KINDS, assert_matches_numerical
from numpy.testing import assert_allclose, assert_array_equal

from npclust import losses
from npclust.gradcheck.cases import awkward_logits

inf = np.inf






def random_simplex_rows(shape, rng):
    return rng.dirichlet(np.ones(shape[1]), size=shape[0])


# ---------------------------------------------------------------------------------- mse


def test_mse_hand_computed():
    loss, dpred = losses.mse([[1.0, 2.0], [3.0, 4.0]], [[0.0, 2.0], [5.0, 4.0]])
    assert loss == pytest.approx(1.25, rel=1e-15)
    assert_array_equal(dpred, [[0.5, 0.0], [-1.0, 0.0]])


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2)])
def test_mse_gradient(shape):
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=shape), rng.normal(size=shape)
    loss, dpred = losses.mse(pred, target)
    assert isinstance(loss, float)
    assert_matches_numerical(lambda x: losses.mse(x, target)[0], pred, dpred)


def test_mse_keeps_float32_and_rejects_shape_mismatch():
    _, dpred = losses.mse(np.ones((3, 2), np.float32), np.zeros((3, 2), np.float32))
    assert dpred.dtype == np.float32
    message = r"pred and target must have the same shape, got \(3, 2\) and \(3, 4\)"
    with pytest.raises(ValueError, match=message):
        losses.mse(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="empty"):
        losses.mse(np.ones(0), np.ones(0))


# ------------------------------------------------------------------------ cross_entropy


def test_cross_entropy_hand_computed():
    logits = np.array([[0.0, np.log(3.0)], [5.0, 5.0]])
    loss, dlogits = losses.cross_entropy(logits, np.array([1, 0]))
    assert loss == pytest.approx((-np.log(0.75) + np.log(2.0)) / 2, rel=1e-14)
    assert_allclose(dlogits, [[0.125, -0.125], [-0.25, 0.25]], rtol=1e-14)


@pytest.mark.parametrize("kind", LOGIT_KINDS)
def test_cross_entropy_gradient(kind):
    rng = np.random.default_rng(1)
    logits = awkward_logits(kind, (6, 4), rng)
    labels = rng.integers(0, 4, size=6)
    loss, dlogits = losses.cross_entropy(logits, labels)
    assert np.isfinite(loss)
    assert_matches_numerical(lambda x: losses.cross_entropy(x, labels)[0], logits, dlogits)


def test_cross_entropy_extreme_logits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logits = np.array([[1e4, -1e4], [0.0, -inf]], np.float32)
        loss, dlogits = losses.cross_entropy(logits, [1, 0])
    assert loss == pytest.approx(2e4 / 2)  # only the first row is wrong, by 2e4 nats
    assert dlogits.dtype == np.float32
    assert_array_equal(dlogits, [[0.5, -0.5], [0.0, 0.0]])


@pytest.mark.parametrize(
    "logits, labels, error, message",
    [
        (np.zeros((3, 2)), np.array([0, 1, 2]), ValueError, r"labels must lie in \[0, 2\)"),
        (np.zeros((3, 2)), np.array([0, -1, 1]), ValueError, r"labels must lie in \[0, 2\)"),
        (np.zeros((3, 2)), np.array([0, 1]), ValueError, "3 rows but labels has 2"),
        (np.zeros((3, 2)), np.zeros((3, 1), int), ValueError, "labels must be 1-D"),
        (np.zeros(3), np.array([0, 1, 0]), ValueError,
         r"logits must be 2-D of shape \(n_samples, n_classes\), got shape \(3,\)"),
        (np.zeros((3, 2)), np.array([0.0, 1.0, 0.0]), TypeError, "integer"),
    ],
)
def test_cross_entropy_validation(logits, labels, error, message):
    with pytest.raises(error, match=message):
        losses.cross_entropy(logits, labels)


# ------------------------------------------------------------------------------- kl_div


def test_kl_div_hand_computed():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    log_q = np.log([[0.25, 0.75], [0.5, 0.5]])
    loss, dlog_q = losses.kl_div(log_q, p)
    expected = (0.5 * np.log(2.0) + 0.5 * np.log(2.0 / 3.0) + np.log(2.0)) / 2
    assert loss == pytest.approx(expected, rel=1e-14)
    assert_array_equal(dlog_q, -p / 2)


def test_kl_div_matches_rel_entr_and_gradient():
    rng = np.random.default_rng(2)
    p = random_simplex_rows((5, 3), rng)
    p[0] = [0.0, 0.3, 0.7]
    log_q = np.log(random_simplex_rows((5, 3), rng))
    loss, dlog_q = losses.kl_div(log_q, p)
    assert loss == pytest.approx(np.sum(scipy.special.rel_entr(p, np.exp(log_q))) / 5, rel=1e-12)
    assert_matches_numerical(lambda x: losses.kl_div(x, p)[0], log_q, dlog_q)


def test_kl_div_zero_target_ignores_minus_inf_log_q():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dlog_q = losses.kl_div(np.array([[0.0, -inf]]), np.array([[1.0, 0.0]]))
    assert loss == 0.0
    assert_array_equal(dlog_q, [[-1.0, 0.0]])
    loss, _ = losses.kl_div(np.array([[-inf, 0.0]]), np.array([[1.0, 0.0]]))
    assert loss == inf  # a target event the model calls impossible


def test_kl_div_validation():
    message = r"log_q and p must have the same shape, got \(2, 3\) and \(2, 2\)"
    with pytest.raises(ValueError, match=message):
        losses.kl_div(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="at least one dimension"):
        losses.kl_div(0.0, 1.0)


# ------------------------------------------------------------------- mutual_information


def mutual_information_in_probability_space(logits, mu):
    p = scipy.special.softmax(logits, axis=1)
    conditional = np.mean(np.sum(scipy.special.entr(p), axis=1))
    marginal = np.sum(scipy.special.entr(p.mean(axis=0)))
    return conditional - mu * marginal


@pytest.mark.parametrize("mu", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("shape", [(1, 3), (8, 2), (10, 5)])
def test_mutual_information_value(mu, shape):
    logits = np.random.default_rng(3).normal(scale=2.0, size=shape)
    loss, dlogits = losses.mutual_information(logits, mu=mu)
    assert isinstance(loss, float)
    assert dlogits.shape == shape
    expected = mutual_information_in_probability_space(logits, mu)
    assert loss == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_mutual_information_extremes():
    # Uniform predictions: H(Y|X) = H(Y) = log k.
    loss, _ = losses.mutual_information(np.zeros((4, 3)), mu=4.0)
    assert loss == pytest.approx(-3 * np.log(3), rel=1e-14)
    # Confident and balanced: H(Y|X) = 0, H(Y) = log k, the minimum.
    confident = np.array([[1e4, -1e4], [-1e4, 1e4]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dlogits = losses.mutual_information(confident, mu=4.0)
    assert loss == pytest.approx(-4 * np.log(2), rel=1e-6)
    assert dlogits.dtype == np.float32 and np.isfinite(dlogits).all()


@pytest.mark.parametrize("kind", LOGIT_KINDS)
@pytest.mark.parametrize("mu", [1.0, 4.0])
def test_mutual_information_gradient(kind, mu):
    rng = np.random.default_rng(4)
    logits = awkward_logits(kind, (7, 4), rng)
    _, dlogits = losses.mutual_information(logits, mu=mu)
    assert_matches_numerical(lambda x: losses.mutual_information(x, mu=mu)[0], logits, dlogits)


def test_mutual_information_gradient_with_an_empty_cluster():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(5, 4))
    logits[:, 2] = -inf  # nobody can be assigned to cluster 2: log pbar_2 = -inf
    logits[1, 0] = -inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, dlogits = losses.mutual_information(logits)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert_array_equal(dlogits[np.isneginf(logits)], 0)
    finite = np.flatnonzero(np.isfinite(logits))
    def f(x):
        return losses.mutual_information(x)[0]

    assert_matches_numerical(f, logits, dlogits, indices=finite)


def test_mutual_information_validation():
    message = r"logits must be 2-D of shape \(n_samples, n_clusters\), got shape \(4,\)"
    with pytest.raises(ValueError, match=message):
        losses.mutual_information(np.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        losses.mutual_information(np.zeros((0, 3)))


# ---------------------------------------------------------------------------------- DEC


def student_t_in_probability_space(z, centers, alpha):
    sq_dist = np.sum((z[:, None, :] - centers[None, :, :]) ** 2, axis=2)
    kernel = (1 + sq_dist / alpha) ** (-(alpha + 1) / 2)
    return kernel / kernel.sum(axis=1, keepdims=True), sq_dist


def dec_gradients_from_paper(z, centers, p, alpha):
    """DEC's published gradients, computed with an explicit (n, k, d) difference tensor."""
    q, sq_dist = student_t_in_probability_space(z, centers, alpha)
    n = z.shape[0]
    weight = (alpha + 1) / alpha / n * (p - q) / (1 + sq_dist / alpha)
    diff = z[:, None, :] - centers[None, :, :]
    return np.einsum("ij,ijd->id", weight, diff), -np.einsum("ij,ijd->jd", weight, diff)


def dec_problem(rng, n=6, k=3, d=2, alpha=1.0):
    z = rng.normal(size=(n, d))
    centers = rng.normal(scale=1.5, size=(k, d))
    p = losses.target_distribution(student_t_in_probability_space(z, centers, alpha)[0])
    return z, centers, p


@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_student_t_assignment_matches_definition(alpha, dtype):
    rng = np.random.default_rng(6)
    z, centers = rng.normal(size=(8, 3)), rng.normal(size=(4, 3))
    q = losses.student_t_assignment(z.astype(dtype), centers.astype(dtype), alpha=alpha)
    assert q.dtype == dtype
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    expected = student_t_in_probability_space(z, centers, alpha)[0]
    assert_allclose(q, expected, rtol=tolerance, atol=tolerance)


def test_student_t_assignment_point_at_center_and_huge_distances():
    centers = np.array([[0.5, -2.0], [3.0, 1.0]])
    z = np.array([[0.5, -2.0], [1e5, 0.0], [-1e7, 1e7]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = losses.student_t_assignment(z, centers, alpha=100.0)
    assert np.isfinite(q).all()
    assert_allclose(q.sum(axis=1), 1.0, rtol=1e-14)
    assert q[0, 0] > 0.99 and q[1, 1] > q[1, 0]
    with np.errstate(all="ignore"):  # the probability-space formula underflows to 0 / 0
        assert np.isnan(student_t_in_probability_space(z, centers, 100.0)[0][1:]).all()


def test_student_t_assignment_clamps_rounded_negative_distances():
    # ||z||^2 + ||mu||^2 - 2 z.mu cancels for points at centers and can round below 0,
    # which with a tiny alpha would be log1p(< -1) = NaN.
    centers = np.random.default_rng(13).normal(scale=1e4, size=(50, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = losses.student_t_assignment(centers.copy(), centers, alpha=1e-9)
    assert np.isfinite(q).all()
    assert_array_equal(np.argmax(q, axis=1), np.arange(50))


def test_student_t_assignment_validation():
    with pytest.raises(ValueError, match="z has 3 features but centers has 2"):
        losses.student_t_assignment(np.zeros((4, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"centers must be 2-D of shape \(n_clusters, n_feat"):
        losses.student_t_assignment(np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(ValueError, match=r"^z must be 2-D of shape \(n_samples, n_features\), "
                                         r"got shape \(3,\)$"):
        losses.student_t_assignment(np.zeros(3), np.zeros((2, 3)))
    for alpha in (0.0, -1.0, inf, True):
        with pytest.raises(ValueError, match="alpha"):
            losses.student_t_assignment(np.zeros((4, 3)), np.zeros((2, 3)), alpha=alpha)


def test_target_distribution_matches_definition():
    q = random_simplex_rows((7, 3), np.random.default_rng(7))
    weights = q**2 / q.sum(axis=0)
    expected = weights / weights.sum(axis=1, keepdims=True)
    assert_allclose(losses.target_distribution(q), expected, rtol=1e-14)


def test_target_distribution_sharpens_and_handles_empty_cluster():
    q = np.array([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.5, 0.5, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = losses.target_distribution(q)
    assert_array_equal(p[:, 2], 0)
    assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    assert p[0, 0] > q[0, 0] and p[1, 1] > q[1, 1]


def test_target_distribution_near_empty_cluster():
    q = np.array([[1 - 2e-300, 2e-300], [1 - 1e-300, 1e-300]])
    p = losses.target_distribution(q)
    assert np.isfinite(p).all()
    assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    # (q_i1^2 / f_1) / (q_i0^2 / f_0) with f_1 = 3e-300, f_0 = 2: q_i1^2 alone underflows.
    assert_allclose(p[:, 1] / p[:, 0], [2e-300 * (2 / 3) * 2, 1e-300 * (1 / 3) * 2], rtol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.5])
def test_dec_loss_value_and_paper_gradients(alpha):
    z, centers, p = dec_problem(np.random.default_rng(8), alpha=alpha)
    p = 0.5 * p + 0.5 * random_simplex_rows(p.shape, np.random.default_rng(9))
    loss, dz, dcenters = losses.dec_loss(z, centers, p, alpha=alpha)
    q = student_t_in_probability_space(z, centers, alpha)[0]
    assert loss == pytest.approx(np.sum(scipy.special.rel_entr(p, q)) / z.shape[0], rel=1e-12)
    paper_dz, paper_dcenters = dec_gradients_from_paper(z, centers, p, alpha)
    assert_allclose(dz, paper_dz, rtol=1e-10, atol=1e-14)
    assert_allclose(dcenters, paper_dcenters, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", ["random", "point_at_center", "near_empty_cluster"])
@pytest.mark.parametrize("alpha", [1.0, 0.3, 4.0])
def test_dec_loss_gradients(case, alpha):
    rng = np.random.default_rng(10)
    z, centers, p = dec_problem(rng, alpha=alpha)
    if case == "point_at_center":
        z[2] = centers[1]
    elif case == "near_empty_cluster":
        centers[0] = [30.0, -30.0]  # no point is near it; its q column is tiny
    p = 0.5 * p + 0.5 * random_simplex_rows(p.shape, rng)
    loss, dz, dcenters = losses.dec_loss(z, centers, p, alpha=alpha)
    assert np.isfinite(loss)
    assert_matches_numerical(lambda x: losses.dec_loss(x, centers, p, alpha=alpha)[0], z, dz)
    assert_matches_numerical(lambda c: losses.dec_loss(z, c, p, alpha=alpha)[0], centers, dcenters)


def test_dec_loss_is_zero_when_target_equals_assignment_and_keeps_float32():
    z, centers, _ = dec_problem(np.random.default_rng(11))
    q = losses.student_t_assignment(z, centers)
    loss, dz, dcenters = losses.dec_loss(z, centers, q)
    assert abs(loss) < 1e-15
    assert_allclose(dz, 0, atol=1e-15)
    assert_allclose(dcenters, 0, atol=1e-15)
    z32, centers32, q32 = z.astype(np.float32), centers.astype(np.float32), q.astype(np.float32)
    _, dz, dcenters = losses.dec_loss(z32, centers32, q32)
    assert dz.dtype == np.float32 and dcenters.dtype == np.float32


def test_dec_loss_validation():
    z, centers, p = dec_problem(np.random.default_rng(12))
    with pytest.raises(ValueError, match=r"p must have shape \(n_samples, n_clusters\) = \(6, 3\)"):
        losses.dec_loss(z, centers, p[:, :2])
    with pytest.raises(ValueError, match="z has 2 features but centers has 3"):
        losses.dec_loss(z, np.zeros((3, 3)), p)


@pytest.mark.parametrize("bad, message", [(np.array(["a"]), "log_q must be a real numeric array"),
                                          (np.empty((0, 3)), "log_q is empty")])
def test_kl_div_names_a_bad_log_q(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        losses.kl_div(bad, np.full((1, 3), 1 / 3))
