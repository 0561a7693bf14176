"""Markdown tables from the experiments' JSON lines (``benchmarks/results/*.jsonl``).

    python benchmarks/experiments/summarize.py > benchmarks/results/experiments.md

Sections: IMSAT radius (and its label-free choice), DEC/IDEC pretraining (k-means
and spectral ACC of the codes), DEC/IDEC final ACC by initialisation, and
restart-selection criteria (rank correlation with ACC).
"""

import itertools
import json
from collections import defaultdict

import numpy as np
from _exp import ALL_SETS, RESULTS, scores  # noqa: F401
from scipy.stats import spearmanr


def read(name):
    path = RESULTS / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def cell(values):
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return "–"
    return f"{values.mean():.3f} ± {values.std():.3f} (n={values.size}, min {values.min():.3f})"


def table(runs, row_key, value_key, title, row_order=None):
    groups = defaultdict(list)
    for run in runs:
        groups[(run[row_key], run["dataset"])].append(run[value_key])
    rows = row_order or list(dict.fromkeys(run[row_key] for run in runs))
    sets = [s for s in ALL_SETS if any(run["dataset"] == s for run in runs)]
    lines = [f"**{title}**", "", f"| {row_key} | " + " | ".join(sets) + " |",
             "|---|" + "---|" * len(sets)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(cell(groups[(row, s)]) for s in sets) + " |")
    return "\n".join(lines) + "\n"


def imsat_section():
    runs = [run for run in read("imsat_radius") if run["epochs"] == 15]
    if not runs:
        return ""
    out = ["## IMSAT: VAT radius (one 15-epoch restart per run, 2,500 samples at most)\n"]
    radii = sorted({run["eps_scale"] for run in runs})
    out.append(table(runs, "eps_scale", "acc", "ACC", radii))
    out.append(table(runs, "eps_scale", "max_p", "mean max-probability", radii))
    for epoch in (5, 10):
        for run in runs:
            run[f"acc_at_{epoch}"] = run["acc_curve"][epoch - 1]
        out.append(table(runs, "eps_scale", f"acc_at_{epoch}", f"ACC after {epoch} epochs", radii))
    # Label-free choices, per data set, from the pool of single restarts.
    lines = ["**Label-free choices** (ACC of the run each rule keeps; per data set)", "",
             "| rule | " + " | ".join(ALL_SETS) + " |", "|---|" + "---|" * len(ALL_SETS)]
    rules = defaultdict(dict)
    for dataset in ALL_SETS:
        mine = [run for run in runs if run["dataset"] == dataset]
        seeds = sorted({run["seed"] for run in mine})
        by = {(run["eps_scale"], run["seed"]): run for run in mine}
        # Radius chosen per seed by the objective among a grid.
        for grid in (radii, [r for r in radii if r >= 0.25]):
            picks = [min((by[(r, s)] for r in grid if (r, s) in by),
                         key=lambda run: run["objective"]) for s in seeds]
            rules["objective picks the radius (per seed, grid " + "/".join(map(str, grid)) + ")"][
                dataset] = [p["acc"] for p in picks]
        # Post hoc (threshold seen with the results): the largest radius of the grid
        # whose run stays confident (mean max-probability >= tau), per seed.
        for tau in (0.8, 0.85, 0.9):
            kept = []
            for s in seeds:
                confident = [by[(r, s)] for r in radii if (r, s) in by and by[(r, s)]["max_p"] >= tau]
                if confident:
                    kept.append(max(confident, key=lambda run: run["eps_scale"])["acc"])
            rules[f"largest radius with mean max-p >= {tau} (post hoc)"][dataset] = kept
        for radius in radii:
            pool = [by[(radius, s)] for s in seeds if (radius, s) in by]
            if len(pool) >= 3:
                # Best-of-3 by objective over every 3-subset of the seeds.
                chosen = [min(group, key=lambda run: run["objective"])["acc"]
                          for group in itertools.combinations(pool, 3)]
                rules[f"eps {radius}: best of 3 restarts by objective"][dataset] = chosen
                if len(pool) >= 4:
                    rules[f"eps {radius}: best of 4 restarts by objective"][dataset] = [
                        min(group, key=lambda run: run["objective"])["acc"]
                        for group in itertools.combinations(pool, 4)]
                rho = spearmanr([run["objective"] for run in pool],
                                [-run["acc"] for run in pool]).statistic if len(pool) > 2 else np.nan
                rules[f"eps {radius}: Spearman(objective, -ACC) over seeds"][dataset] = [rho]
        allpool = [run for run in mine]
        rho = spearmanr([run["objective"] for run in allpool], [-run["acc"] for run in allpool])
        rules["all radii pooled: Spearman(objective, -ACC)"][dataset] = [rho.statistic]
    for rule, per_set in rules.items():
        lines.append(f"| {rule} | " + " | ".join(
            (cell(per_set.get(s, [])) if "Spearman" not in rule else
             (f"{per_set[s][0]:.2f}" if s in per_set else "–")) for s in ALL_SETS) + " |")
    out.append("\n".join(lines) + "\n")
    long_runs = [run for run in read("imsat_radius") if run["epochs"] != 15]
    if long_runs:
        out.append(table(long_runs, "eps_scale", "acc", "longer runs (epochs = "
                         + ", ".join(str(e) for e in sorted({r['epochs'] for r in long_runs}))
                         + ")"))
    return "\n".join(out)


def pretrain_section():
    runs = [run for run in read("dec_pretrain") if not run.get("diverged")]
    if not runs:
        return ""
    out = ["## DEC/IDEC pretraining: clustering the pretrained codes\n"]
    out.append(table(runs, "variant", "kmeans_acc", "k-means ACC of the codes"))
    out.append(table(runs, "variant", "spectral_acc", "spectral-clustering ACC of the codes"))
    out.append(table(runs, "variant", "seconds", "pretraining time (s, one thread)"))
    diverged = [run for run in read("dec_pretrain") if run.get("diverged")]
    if diverged:
        out.append("Diverged (non-finite loss): " + ", ".join(
            f"{r['variant']} on {r['dataset']} seed {r['seed']}" for r in diverged) + "\n")
    return "\n".join(out)


def raw_section():
    runs = read("raw_baselines")
    if not runs:
        return ""
    return ("## Baselines on the raw features (no network)\n\n"
            + table(runs, "variant", "acc", "ACC"))


def finetune_section():
    runs = read("dec_finetune")
    if not runs:
        return ""
    out = ["## DEC/IDEC final ACC by pretraining and initialisation\n"]
    for run in runs:
        run["variant"] = f"{run['method']} / {run['pretraining']} / {run['init']}"
    out.append(table(runs, "variant", "acc", "final ACC"))
    out.append(table(runs, "variant", "init_acc", "ACC of the initialisation"))
    return "\n".join(out)


def selection_section():
    path = RESULTS / "dec_selection.json"
    if not path.exists():
        return ""
    result = json.loads(path.read_text())
    lines = ["## DEC/IDEC restart selection: Spearman rank correlation of each criterion with ACC\n",
             "| method | criterion | " + " | ".join(ALL_SETS) + " |",
             "|---|---|" + "---|" * len(ALL_SETS)]
    for method, criteria in result.items():
        for criterion, per_set in criteria.items():
            lines.append(f"| {method} | {criterion} | " + " | ".join(
                per_set.get(s, "–") if isinstance(per_set.get(s), str) else
                (f"{per_set[s]:.2f}" if s in per_set else "–") for s in ALL_SETS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for section in (imsat_section, raw_section, pretrain_section, finetune_section,
                    selection_section):
        text = section()
        if text:
            print(text)
