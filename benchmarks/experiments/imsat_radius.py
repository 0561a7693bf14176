"""IMSAT's VAT radius across the visible sets: eps_scale 0.25 (paper) / 0.5 / 0.75 (current).

Each run is ONE restart (``n_init=1``) of ``epochs`` epochs with everything else at the
current defaults, so restart strategies can be evaluated afterwards from the pool
(best-of-k by the objective ``H(Y|X) - mu H(Y)``, and the objective choosing among
radii) without training again. ACC at epochs 5, 10 and 15 is recorded through the
monitoring ``y`` (it never influences training).

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments/imsat_radius.py --seeds 0 1 2 3
"""

import argparse

from _exp import ALL_SETS, Recorder, Timer, data, scores

from npclust.cluster import IMSAT


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=ALL_SETS)
    parser.add_argument("--radii", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    recorder = Recorder("imsat_radius")
    for seed in args.seeds:
        for name in args.datasets:
            X, y = data(name)
            for radius in args.radii:
                key = dict(dataset=name, eps_scale=radius, seed=seed, epochs=args.epochs)
                if recorder.has(**key):
                    continue
                with Timer() as timer:
                    model = IMSAT(n_clusters=10, eps_scale=radius, n_init=1, epochs=args.epochs,
                                  random_state=seed).fit(X, y)
                curve = [round(entry.get("acc", float("nan")), 4) for entry in model.history_]
                recorder.add({**key, **scores(y, model.labels_), "objective": float(model.objective_),
                              "max_p": float(model.predict_proba(X).max(axis=1).mean()),
                              "acc_curve": curve, "seconds": timer.seconds})


if __name__ == "__main__":
    main()
