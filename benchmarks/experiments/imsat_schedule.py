"""IMSAT's training budget: 4 restarts of 15 epochs (current) against the paper's one
run of 50 epochs, 2 restarts of 30, and a consensus of the restarts.

Each run is ONE restart (``n_init=1``) of 50 epochs at the current defaults (radius
0.25). IMSAT has no learning-rate schedule, so the state after epoch 15 (or 30) of a
50-epoch run is exactly a 15-epoch (30-epoch) run of the same seed: the objective
``H(Y|X) - mu H(Y)`` and the labels are recorded there and at the end, and every
restart strategy is evaluated afterwards from the pool of seeds (``--summarize``)
without training again. Labels are kept in ``results/imsat_schedule/`` (not in git).

    OPENBLAS_NUM_THREADS=1 python benchmarks/experiments/imsat_schedule.py --seeds 0 1 2 3
    python benchmarks/experiments/imsat_schedule.py --summarize
"""

import argparse
import itertools
import json

import numpy as np
from _exp import ALL_SETS, RESULTS, Recorder, Timer, data, scores
from scipy.stats import spearmanr

from npclust.cluster import IMSAT
from npclust.cluster.base import evaluate
from npclust.functional import softmax
from npclust.losses import mutual_information
from npclust.spectral import consensus_clustering

SNAPSHOTS = (15, 30, 50)
VARIANTS = {"default": None, "small_output": 1e-4}
LABELS = RESULTS / "imsat_schedule"


class SnapshotIMSAT(IMSAT):
    """IMSAT that records the objective, labels and confidence after chosen epochs.

    ``output_scale`` multiplies the last layer's initial weights and zeroes its bias:
    Hu et al.'s code starts that layer at a weight scale of 1e-4 (the predictions start
    uniform), where PyTorch's default gives initial logits of spread about 0.4.
    """

    output_scale = None

    def _build_model(self, n_features, rng):
        model = super()._build_model(n_features, rng)
        if self.output_scale is not None:
            last = model["network"][-1]
            last.weight.data *= self.output_scale
            last.bias.data[...] = 0.0
        return model

    def _train_epoch(self, run):
        values = super()._train_epoch(run)
        self.epochs_done_ = getattr(self, "epochs_done_", 0) + 1
        if self.epochs_done_ in SNAPSHOTS:
            logits = evaluate(run.model["network"], run.X)
            objective, _ = mutual_information(logits, mu=self.mu)
            labels, max_p = logits.argmax(axis=1), float(softmax(logits).max(axis=1).mean())
            self.snapshots_[self.epochs_done_] = (float(objective), labels, max_p)
        return values


def train(args):
    recorder = Recorder("imsat_schedule")
    LABELS.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for name in args.datasets:
            if recorder.has(dataset=name, seed=seed, variant=args.variant):
                continue
            X, y = data(name)
            model = SnapshotIMSAT(n_clusters=10, n_init=1, epochs=max(SNAPSHOTS), random_state=seed)
            model.output_scale = VARIANTS[args.variant]
            model.snapshots_ = {}
            with Timer() as timer:
                model.fit(X)
            run = {"dataset": name, "seed": seed, "variant": args.variant, "seconds": timer.seconds}
            for epoch, (objective, labels, max_p) in model.snapshots_.items():
                run[f"e{epoch}"] = {**scores(y, labels), "objective": objective, "max_p": max_p}
            np.savez(LABELS / f"{name}_{seed}{_suffix(args.variant)}.npz",
                     **{f"e{epoch}": labels for epoch, (_, labels, _) in model.snapshots_.items()})
            recorder.add(run)


def summarize(args):
    runs = [json.loads(line) for line in (RESULTS / "imsat_schedule.jsonl").read_text().splitlines()]
    rows = {}
    for name in args.datasets:
        mine = sorted((run for run in runs if run["dataset"] == name
                       and run.get("variant", "default") == args.variant), key=lambda run: run["seed"])
        if not mine:
            continue
        _, y = data(name)
        labels = {run["seed"]: np.load(LABELS / f"{name}_{run['seed']}{_suffix(args.variant)}.npz")
                  for run in mine}
        seeds = [run["seed"] for run in mine]
        by_seed = {run["seed"]: run for run in mine}

        def best_of(epoch, k, continued_to=None):
            """ACC of the run the objective keeps after ``epoch`` epochs (then trained on to
            ``continued_to`` epochs, if given), for every k-subset of the seeds."""
            final = f"e{continued_to or epoch}"
            return [by_seed[min(group, key=lambda s: by_seed[s][f"e{epoch}"]["objective"])][final]["acc"]
                    for group in itertools.combinations(seeds, k)]

        def consensus_of(epoch, k):
            """ACC of the consensus labeling, for every k-subset of the seeds."""
            return [scores(y, consensus_clustering([labels[s][f"e{epoch}"] for s in group], 10,
                                                   random_state=0))["acc"]
                    for group in itertools.combinations(seeds, k)]

        rows[name] = {
            "1 x 15 (one restart)": [by_seed[s]["e15"]["acc"] for s in seeds],
            "1 x 30": [by_seed[s]["e30"]["acc"] for s in seeds],
            "1 x 50 (paper)": [by_seed[s]["e50"]["acc"] for s in seeds],
            "4 x 15, lowest objective (current)": best_of(15, 4),
            "2 x 30, lowest objective": best_of(30, 2),
            "2 x 15, lowest objective trained on to 50 (65 epochs)": best_of(15, 2, 50),
            "3 x 15, lowest objective trained on to 50 (80 epochs)": best_of(15, 3, 50),
            "4 x 15, lowest objective trained on to 50 (95 epochs)": best_of(15, 4, 50),
            "2 x 30 consensus": consensus_of(30, 2),
            "4 x 15 consensus": consensus_of(15, 4),
            "mean max-p after 15": [by_seed[s]["e15"]["max_p"] for s in seeds],
            "mean max-p after 50": [by_seed[s]["e50"]["max_p"] for s in seeds],
            "Spearman(objective after 15, -ACC after 50)": [spearmanr(
                [by_seed[s]["e15"]["objective"] for s in seeds],
                [-by_seed[s]["e50"]["acc"] for s in seeds]).statistic],
        }
    names = list(rows)
    print("| rule | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for rule in next(iter(rows.values())):
        cells = []
        for name in names:
            values = np.array(rows[name][rule])
            cells.append(f"{values.mean():.3f} ± {values.std():.3f} (n={len(values)}, min {values.min():.3f})"
                         if len(values) > 1 else f"{values[0]:.3f}")
        print(f"| {rule} | " + " | ".join(cells) + " |")


def _suffix(variant):
    """The label files' suffix: none for the defaults, as before variants existed."""
    return "" if variant == "default" else f"_{variant}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=ALL_SETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(8)))
    parser.add_argument("--variant", choices=list(VARIANTS), default="default")
    parser.add_argument("--summarize", action="store_true")
    args = parser.parse_args()
    summarize(args) if args.summarize else train(args)


if __name__ == "__main__":
    main()
