"""Plots of a fit (matplotlib extra): a readable PNG from the API and from the command line."""

import numpy as np
import pytest

from npclust.cluster import DEC, IMSAT
from npclust.datasets import make_blobs
from npclust.plotting import principal_components


def test_principal_components_orders_axes_by_variance():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((500, 3)) * [10.0, 1.0, 0.1]
    projected = principal_components(Z)
    assert projected.shape == (500, 2)
    variances = projected.var(axis=0)
    assert variances[0] == pytest.approx(100, rel=0.2) and variances[1] == pytest.approx(1, rel=0.2)
    assert principal_components(Z[:, :1]).shape == (500, 2)


@pytest.fixture
def blobs():
    X, y = make_blobs(n_samples=150, n_features=4, centers=3, random_state=1)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


@pytest.mark.parametrize("make", [
    lambda: IMSAT(n_clusters=3, hidden_dims=(16,), epochs=4, n_neighbors=5, random_state=0),
    lambda: DEC(n_clusters=3, hidden_dims=(16,), latent_dim=2, pretrain_epochs=3, max_iter=20,
                update_interval=10, random_state=0),
])
@pytest.mark.parametrize("with_labels", [True, False])
def test_plot_fit_writes_a_png(blobs, tmp_path, make, with_labels):
    pytest.importorskip("matplotlib")
    from npclust.plotting import plot_fit

    X, y = blobs
    model = make().fit(X, y if with_labels else None)
    path = tmp_path / "fit.png"
    plot_fit(model, X, path, y=y if with_labels else None)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp"))


def test_cli_fit_plot(blobs, tmp_path):
    pytest.importorskip("matplotlib")
    from npclust.cli import main

    X, _ = blobs
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    status = main(["fit", str(tmp_path / "X.npy"), "--n-clusters", "3", "--method", "kmeans",
                   "--quiet", "--output", str(tmp_path / "labels.csv"),
                   "--plot", str(tmp_path / "fit.png")])
    assert status == 0
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_scan_plot(blobs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from npclust.cli import main

    X, _ = blobs
    np.save(tmp_path / "X.npy", X)
    assert main(["scan", str(tmp_path / "X.npy"), "--n-clusters", "2:3", "--resamples", "2",
                 "--set", "n_init=1", "--plot", str(tmp_path / "scan.png")]) == 0
    assert (tmp_path / "scan.png").read_bytes()[:4] == b"\x89PNG"
    assert "plot written to" in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_error(blobs, tmp_path, monkeypatch):
    import builtins

    from npclust import plotting

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    X, _ = blobs
    model = IMSAT(n_clusters=3, hidden_dims=(8,), epochs=1, n_neighbors=5, random_state=0).fit(X)
    with pytest.raises(ImportError, match=r"npclust\[plot\]"):
        plotting.plot_fit(model, X, tmp_path / "x.png")


def test_training_curves_show_every_restart_and_kmeans_gets_no_empty_panel(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    from npclust import plotting
    from npclust.cluster import IMSAT, KMeans
    from npclust.datasets import make_blobs

    X, y = make_blobs(n_samples=60, n_features=3, centers=3, random_state=0)
    model = IMSAT(n_clusters=3, hidden_dims=(8,), epochs=3, n_init=3, n_neighbors=3,
                  random_state=0).fit(X)
    assert len(model.restart_histories_) == 3 and model.history_ in model.restart_histories_
    panels = []
    original = plotting._import_pyplot

    def recording_pyplot():
        plt = original()
        subplots = plt.subplots

        def recorded(*args, **kwargs):
            figure, axes = subplots(*args, **kwargs)
            panels.append(figure)
            return figure, axes
        monkeypatch.setattr(plt, "subplots", recorded)
        return plt

    monkeypatch.setattr(plotting, "_import_pyplot", recording_pyplot)
    plotting.plot_fit(model, X, tmp_path / "imsat.png", y=y)
    curves = panels[-1].axes[1]
    # Three restarts faint and the kept one bold; a labelled loss axis; the legend entirely
    # below the axes, where it cannot hide the curves' last points.
    widths = sorted(line.get_linewidth() for line in curves.get_lines())
    assert len(widths) == 4 and widths[-1] > 2 * widths[0] and widths[-2] == widths[0]
    assert curves.get_ylabel()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(panels[-1]).get_renderer()
    legend_box = curves.get_legend().get_window_extent(renderer)
    assert legend_box.y1 <= curves.get_window_extent(renderer).y0
    plotting.plot_fit(KMeans(n_clusters=3, random_state=0).fit(X), X, tmp_path / "k.png", y=y)
    assert len([axis for axis in panels[-1].axes if axis.get_visible()]) == 2


def test_the_kept_restart_trained_on_continues_its_own_curve():
    from npclust.plotting import _curves

    X, _ = make_blobs(n_samples=60, n_features=3, centers=3, random_state=0)
    model = IMSAT(n_clusters=3, hidden_dims=(8,), n_init=2, restart_epochs=2, epochs=5,
                  n_neighbors=3, random_state=0).fit(X)
    kept = _curves(model.history_)
    assert list(kept) == ["train"]
    epochs, values, key = kept["train"]
    assert epochs == [1, 2, 3, 4, 5] and key == "loss"
    assert values == [entry["loss"] for entry in model.history_]
    assert all(_curves(history)["train"][0] in ([1, 2], epochs)
               for history in model.restart_histories_)
