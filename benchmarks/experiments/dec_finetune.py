"""DEC/IDEC self-training from saved pretrainings, with k-means or spectral initial centers.

A subclass of the current estimators replaces two steps only: ``_pretrain`` loads
the weights ``dec_pretrain.py`` saved (same seed, same architecture), and
``_initial_centers`` is either DEC's k-means (``init="kmeans"``, the current
behaviour) or ``npclust.spectral.spectral_clustering`` of the codes, whose cluster
means become the centers (``init="spectral"``). Everything else (self-training,
stopping rule, objective) is the current code with its defaults. ``init="spectral_input"``
clusters the input features instead of the codes and takes the code means of those
clusters as centers. The final codes
and labels are saved so that restart-selection criteria can be scored afterwards.

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments/dec_finetune.py --pretraining adam
"""

import argparse

import numpy as np
from _exp import ALL_SETS, Recorder, Timer, data, scores
from dec_pretrain import SAVE

from npclust import nn
from npclust.cluster import DEC, IDEC
from npclust.spectral import spectral_clustering


class _FromSaved:
    weights_path = None
    init = "kmeans"

    def _pretrain(self, X, y, encoder, decoder, rng, prefix, save, saved):
        arrays = np.load(self.weights_path)
        for module, name in ((encoder, "encoder."), (decoder, "decoder.")):
            module.load_state_dict({key[len(name):]: arrays[key] for key in arrays.files
                                    if key.startswith(name)})
        return []

    def fit(self, X, y=None):
        self._inputs = X
        return super().fit(X, y)

    def _initial_centers(self, z, rng):
        if self.init == "kmeans":
            return super()._initial_centers(z, rng)
        # "spectral": of the codes; "spectral_input": of the input features themselves.
        points = z if self.init == "spectral" else self._inputs
        labels = spectral_clustering(np.asarray(points, dtype=np.float64), self.n_clusters,
                                     random_state=rng)
        centers = np.stack([z[labels == j].mean(axis=0) for j in range(self.n_clusters)])
        return nn.Parameter(centers.astype(z.dtype)), labels


class SavedDEC(_FromSaved, DEC):
    pass


class SavedIDEC(_FromSaved, IDEC):
    pass


METHODS = {"dec": SavedDEC, "idec": SavedIDEC}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=ALL_SETS)
    parser.add_argument("--pretraining", default="adam")
    parser.add_argument("--methods", nargs="+", default=["dec", "idec"])
    parser.add_argument("--inits", nargs="+", default=["kmeans", "spectral"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    recorder = Recorder("dec_finetune")
    for seed in args.seeds:
        for name in args.datasets:
            X, y = data(name)
            weights = SAVE / f"{name}_{args.pretraining}_{seed}.npz"
            if not weights.exists():
                print("missing", weights, flush=True)
                continue
            for method in args.methods:
                for init in args.inits:
                    key = dict(dataset=name, pretraining=args.pretraining, method=method,
                               init=init, seed=seed)
                    if recorder.has(**key):
                        continue
                    model = METHODS[method](n_clusters=10, random_state=seed)
                    model.weights_path, model.init = weights, init
                    with Timer() as timer:
                        model.fit(X, y)
                    start = next(e for e in model.history_ if "acc" in e)
                    Z = model.transform(X)
                    np.savez(SAVE / f"final_{name}_{args.pretraining}_{method}_{init}_{seed}.npz",
                             codes=Z, labels=model.labels_)
                    recorder.add({**key, **scores(y, model.labels_), "init_acc": start["acc"],
                                  "objective": float(model.objective_), "n_iter": int(model.n_iter_),
                                  "seconds": timer.seconds})


if __name__ == "__main__":
    main()
