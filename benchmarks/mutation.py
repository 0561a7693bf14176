"""Mutation testing: which share of small planted bugs does the test suite catch, per module?

Runs mutmut (``pip install mutmut``; configured in ``pyproject.toml``) in a fresh copy
of the committed tree, so the working tree is never touched, on the modules named
(default: the estimators, the training loop, losses, optimizers, the file layer and
the command line), each within a time budget. Writes the killed fraction per module
and every surviving mutant to JSON and Markdown. Too slow for CI (mutmut runs the
relevant tests once per mutant); run it by hand and commit the report.

    python benchmarks/mutation.py --minutes 30 --json benchmarks/results/mutation.json
    python benchmarks/mutation.py --modules npclust.cluster.training --minutes 60
"""

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["npclust.cluster.training", "npclust.cluster.imsat", "npclust.cluster.dec",
           "npclust.cluster.kmeans", "npclust.lloyd", "npclust.losses", "npclust.optim",
           "npclust.files.archive", "npclust.files.checkpoint", "npclust.files.matrix",
           "npclust.cli"]


def results(copy):
    """``{mutant name: status}`` from ``mutmut results``."""
    output = subprocess.run(["mutmut", "results", "--all", "true"], cwd=copy, capture_output=True,
                            text=True).stdout
    statuses = {}
    for line in output.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name.startswith("npclust."):
            statuses[name] = status
    return statuses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", default=MODULES)
    parser.add_argument("--minutes", type=float, default=20, help="time budget per module")
    parser.add_argument("--json", default="", help="write the report here (and .md beside it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(directory) / "repo"
        copy.mkdir()
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x"], cwd=copy, input=archive, check=True)
        report = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                           capture_output=True).stdout.strip(), "modules": {}}
        for module in args.modules:
            try:
                subprocess.run(["mutmut", "run", "--max-children", "1", f"{module}.*"], cwd=copy,
                               timeout=args.minutes * 60, capture_output=True)
            except subprocess.TimeoutExpired:
                pass  # what was checked in time is reported; the rest counts as not checked
            mine = {name: status for name, status in results(copy).items()
                    if name.startswith(module + ".")}
            counts = Counter(mine.values())
            checked = counts["killed"] + counts["survived"] + counts["timeout"]
            report["modules"][module] = {
                "mutants": len(mine), "checked": checked, "killed": counts["killed"],
                "timeout": counts["timeout"], "survived": counts["survived"],
                "killed_fraction": (counts["killed"] + counts["timeout"]) / checked
                if checked else None,
                "survivors": sorted(name for name, status in mine.items() if status == "survived"),
            }
            row = report["modules"][module]
            print(f"{module:<28} {row['checked']:>5} of {row['mutants']:>5} checked, "
                  f"killed {row['killed_fraction'] if checked else float('nan'):.1%}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        lines = ["| module | mutants | checked | killed (or timed out) | survived |",
                 "|---|---|---|---|---|"]
        for module, row in report["modules"].items():
            share = f"{row['killed_fraction']:.1%}" if row["checked"] else "-"
            lines.append(f"| {module} | {row['mutants']} | {row['checked']} | {share} | "
                         f"{row['survived']} |")
        Path(args.json).with_suffix(".md").write_text("\n".join(lines) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
