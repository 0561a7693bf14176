"""One-page picture of a fit: the embedding in 2-D, the training curves, the confusion matrix.

Needs matplotlib (``pip install npclust[plot]``), imported only when a plot is made;
the figure is rendered with the non-interactive Agg backend, so it works without a
display.
"""

import numpy as np

from .files.archive import atomic_write
from .metrics import cluster_to_class_mapping, contingency_matrix

__all__ = ["principal_components", "plot_fit", "plot_scan"]


def principal_components(Z, n_components=2):
    """Project the rows of ``Z`` on their first principal axes (centred SVD).

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
    n_components : int, default=2

    Returns
    -------
    ndarray of shape (n_samples, n_components)
        Zero columns pad the result when ``Z`` has fewer features than components.
    """
    Z = np.asarray(Z, dtype=np.float64)
    centred = Z - Z.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ directions[:n_components].T
    if projected.shape[1] < n_components:
        projected = np.hstack([projected, np.zeros((Z.shape[0], n_components - projected.shape[1]))])
    return projected


def _import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "plots need matplotlib; install it with: pip install 'npclust[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_embedding(axis, model, X, labels):
    points = principal_components(model.transform(X))
    colours = np.asarray(labels) % 20
    axis.scatter(points[:, 0], points[:, 1], c=colours, cmap="tab20" if labels.max() >= 10
                 else "tab10", s=6, alpha=0.7, linewidths=0)
    for cluster in np.unique(labels):
        centre = np.median(points[labels == cluster], axis=0)
        axis.annotate(str(cluster), centre, ha="center", va="center", fontsize=9,
                      fontweight="bold", bbox=dict(boxstyle="round,pad=0.15", fc="white",
                                                   alpha=0.8, lw=0))
    axis.set_title(f"{type(model).__name__}: transform(X), first two principal axes")
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")


_LOSS_KEYS = ("loss", "reconstruction")


def _curves(history):
    """``{stage name: (epochs, values, value name)}`` of every stage with a loss curve."""
    curves = {}
    for stage in dict.fromkeys(entry["stage"] for entry in history):
        entries = [entry for entry in history if entry["stage"] == stage]
        key = next((name for name in _LOSS_KEYS if name in entries[0]), None)
        if key is not None and len(entries) > 1:
            # "restart 2/4 pretrain" and "pretrain" are the same stage of different runs.
            name = stage.split(" ", 2)[-1] if stage.startswith("restart ") else stage
            epochs = [entry["epoch"] for entry in entries]
            values = [entry[key] for entry in entries]
            continued = curves.get(name.removesuffix(" on"))
            if name.endswith(" on") and continued is not None and continued[2] == key:
                # The kept restart trained on ("train on") is the same training going on:
                # one curve, its epochs counted on from where the restarts stopped.
                epochs = [epoch + continued[0][-1] for epoch in epochs]
                name, epochs, values = name[:-3], continued[0] + epochs, continued[1] + values
            curves[name] = (epochs, values, key)
    return curves


def _has_curves(model):
    return bool(_curves(model.history_))


def _plot_history(axis, model):
    """Every restart's loss curves, faint, and the kept restart's in bold, stage by stage."""
    kept = _curves(model.history_)
    colours = {stage: f"C{index}" for index, stage in enumerate(kept)}
    for history in getattr(model, "restart_histories_", []):
        for stage, (epochs, values, _) in _curves(history).items():
            axis.plot(epochs, values, color=colours.get(stage, "grey"), lw=0.8, alpha=0.35)
    for stage, (epochs, values, key) in kept.items():
        axis.plot(epochs, values, color=colours[stage], lw=2, marker=".", label=f"{stage}: {key}")
    restarts = len(getattr(model, "restart_histories_", [])) or 1
    axis.set_title("training curves" + (f" (kept restart bold, {restarts - 1} others faint)"
                                        if restarts > 1 else ""))
    axis.set_xlabel("epoch (or target update)")
    axis.set_ylabel("training loss (each stage its own objective)")
    axis.grid(alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    monitored = [entry for entry in model.history_ if "acc" in entry]
    monitored = [entry for entry in monitored if entry["stage"] == monitored[-1]["stage"]] if (
        monitored) else []
    if len(monitored) > 1:
        accuracy_axis = axis.twinx()
        accuracy_axis.plot([entry["epoch"] for entry in monitored],
                           [entry["acc"] for entry in monitored], color="black", lw=1, ls="--",
                           label=f"{monitored[-1]['stage']}: ACC (monitoring)")
        accuracy_axis.set_ylim(0, 1)
        accuracy_axis.set_ylabel("ACC (labels used for monitoring only)")
        more_handles, more_labels = accuracy_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    # Below the axes, where it cannot hide the last points of a curve.
    axis.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                ncol=2, frameon=False)


def _plot_confusion(axis, y, labels):
    table, classes, clusters = contingency_matrix(y, labels)
    mapping = cluster_to_class_mapping(y, labels)
    class_position = {label: index for index, label in enumerate(classes)}
    # Clusters in the order of the class each is matched to, so a good clustering is diagonal.
    order = sorted(range(len(clusters)),
                   key=lambda j: class_position.get(mapping.get(clusters[j]), len(classes)))
    table = table[:, order]
    axis.imshow(table, cmap="Blues")
    for (i, j), count in np.ndenumerate(table):
        if count:
            axis.text(j, i, str(count), ha="center", va="center", fontsize=7,
                      color="white" if count > table.max() / 2 else "black")
    axis.set_xticks(range(len(order)), [str(clusters[j]) for j in order])
    axis.set_yticks(range(len(classes)), [str(c) for c in classes])
    axis.set_xlabel("cluster")
    axis.set_ylabel("class")
    axis.set_title("confusion matrix (clusters matched to classes)")


def plot_fit(model, X, path, y=None):
    """Save a PNG of a fitted model: embedding, training curves, and confusion if ``y`` is known.

    The training curves show every restart (faint) and the kept one (bold); a model
    without curves (KMeans) gets no curve panel.

    Parameters
    ----------
    model : fitted npclust estimator
    X : ndarray of shape (n_samples, n_features)
        Data to project (usually the training data).
    path : str or os.PathLike
        Where to write the PNG (atomically).
    y : array_like of shape (n_samples,), optional
        Known classes, for the confusion matrix.
    """
    plt = _import_pyplot()
    labels = model.predict(X)
    # k-means keeps no training curve (one history entry): no empty panel for it.
    panels = [_plot_embedding, *([_plot_history] if _has_curves(model) else []),
              *([_plot_confusion] if y is not None else [])]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.6), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        if panel is _plot_embedding:
            panel(axis, model, X, labels)
        elif panel is _plot_history:
            panel(axis, model)
        else:
            panel(axis, np.asarray(y), labels)
    figure.tight_layout()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110))
    plt.close(figure)


def plot_scan(rows, best, path):
    """Save a PNG of :func:`npclust.cluster.scan_n_clusters`' criteria against ``k``.

    Parameters
    ----------
    rows : list of dict
        As returned by ``scan_n_clusters``.
    best : int
        The suggested ``k``, marked on the plot.
    path : str or os.PathLike
        Where to write the PNG (atomically).
    """
    plt = _import_pyplot()
    ks = [row["n_clusters"] for row in rows]
    figure, (silhouette_axis, stability_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    silhouette_axis.plot(ks, [row["silhouette"] for row in rows], marker="o")
    silhouette_axis.set_ylabel("silhouette (higher is better)")
    stability_axis.errorbar(ks, [row["stability"] for row in rows],
                            yerr=[row["stability_std"] for row in rows], marker="o", capsize=3)
    stability_axis.set_ylabel("stability: ARI between subsample fits")
    for axis in (silhouette_axis, stability_axis):
        axis.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"suggested k = {best}")
        axis.set_xlabel("number of clusters k")
        axis.set_xticks(ks)
        axis.grid(alpha=0.3)
        axis.legend(loc="best")
    figure.tight_layout()
    atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=110))
    plt.close(figure)
