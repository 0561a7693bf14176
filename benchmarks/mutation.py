"""Mutation testing: which share of small planted bugs does the test suite catch, per module?

Runs mutmut 3.8 (``pip install mutmut``; configured in ``pyproject.toml``) in a fresh
copy of the committed tree, so the working tree is never touched. mutmut checks a few
mutants a minute on a 2-core machine (each one reruns the tests that reach the mutated
function) and a module has 200-1000 mutants, so a full run takes hours, and checking
the first mutants in file order measures only the first functions. Instead the script
lists every mutant of each module (with mutmut's own generator, no test run), draws
``--sample`` of them uniformly at random (seeded: the same sample while the module's
source and the seed stay the same), runs mutmut once on the samples of all modules
together, and reports per module the number of mutants, the sample, killed (a timeout
counts as killed), survived, the killed fraction with its 95% Wilson interval, and
each survivor with its status. Too slow for CI: run it by hand, commit the report.

    OPENBLAS_NUM_THREADS=1 nice -n 19 python benchmarks/mutation.py --sample 25 \\
        --json benchmarks/results/mutation.json --markdown sampled.md
    python benchmarks/mutation.py --modules npclust.optim --sample 60 --seed 2
    python benchmarks/mutation.py --rerun benchmarks/results/mutation.json

``--rerun`` checks what an earlier report's run did not kill (survivors, timeouts, and
mutants not reached in its time limit) again on the current commit, after new tests
were added, and records the result in that report under ``after``.
"""

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["npclust.cluster.imsat", "npclust.cluster.dec", "npclust.cluster.training",
           "npclust.cluster.kmeans", "npclust.lloyd", "npclust.cluster.spectral_clustering",
           "npclust.losses", "npclust.optim", "npclust.files.archive",
           "npclust.files.checkpoint", "npclust.files.matrix", "npclust.files.output",
           "npclust.cli"]
KILLED = ("killed", "timeout")


def copy_of_head(directory):
    """Extract the committed tree into ``directory``/repo; return it and the commit."""
    copy = Path(directory) / "repo"
    copy.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x"], cwd=copy, input=archive, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True, check=True).stdout.strip()
    return copy, commit


def all_mutants(copy, module):
    """Every mutant name mutmut makes of ``module``, without running a test.

    Uses the generator ``mutmut run`` itself calls, so the names are the ones that
    ``mutmut run`` accepts (``run_mutants`` checks that each sampled name came back).
    """
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    relative = Path(*module.split(".")).with_suffix(".py")
    mutated = mutate_file_contents(str(relative), (copy / relative).read_text())
    return sorted(get_mutant_name(relative, name) for name in mutated.mutant_names)


def draw(names, size, seed, module):
    """A uniform sample without replacement, fixed by the seed and the module's name."""
    return sorted(random.Random(f"{seed}:{module}").sample(names, min(size, len(names))))


def run_mutants(copy, names, minutes):
    """``mutmut run`` on exactly ``names``; ``{name: status}`` of those, after at most ``minutes``.

    The first call in a copy also runs the whole suite once to learn which tests reach
    which function. mutmut forks a worker per mutant, so on timeout the whole process
    group is killed; mutants it did not reach stay "not checked".
    """
    log = copy / "mutmut.log"
    # mutmut forks each mutant's test run from the process that ran the whole suite. A
    # thread pool made there has no threads in the fork, and waits for them forever:
    # dask's threaded scheduler and torch's OpenMP team did, so neither starts one.
    environment = dict(os.environ, DASK_SCHEDULER="synchronous", OMP_NUM_THREADS="1")
    with open(log, "ab") as out:
        process = subprocess.Popen(["mutmut", "run", "--max-children", "1", *names], cwd=copy,
                                   env=environment, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            failed = process.wait(timeout=minutes * 60) != 0
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            failed = False
    statuses = {}
    output = subprocess.run(["mutmut", "results", "--all", "true"], cwd=copy, capture_output=True,
                            text=True, check=True).stdout
    for line in output.splitlines():
        name, _, status = line.strip().rpartition(": ")
        statuses[name] = status
    missing = set(names) - set(statuses)
    if failed or missing:
        sys.exit(f"mutmut failed (unknown names: {sorted(missing)[:3]}); the end of its output:\n"
                 + log.read_text(errors="replace")[-3000:])
    return {name: statuses[name] for name in names}


def test_seconds(copy, module, names):
    """Seconds mutmut spent testing ``names``, as it recorded them in the module's meta file."""
    meta = copy / "mutants" / Path(*module.split(".")).with_suffix(".py.meta")
    durations = json.loads(meta.read_text())["durations_by_key"]
    return sum(durations.get(name, 0.0) for name in names)


def wilson(successes, trials, z=1.96):
    """The 95% Wilson score interval of a binomial proportion (sound at 0 and 1, unlike p +- 2 se)."""
    if not trials:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def summarize(statuses):
    """Counts, killed fraction and survivors of ``{name: status}``.

    Anything checked that neither killed nor timed out is a survivor, with its status:
    "no tests" (no test reaches the function) and "segfault" are gaps as well.
    """
    counts = Counter(statuses.values())
    checked = len(statuses) - counts["not checked"]
    killed = counts["killed"] + counts["timeout"]
    return {"checked": checked, "killed": counts["killed"], "timeout": counts["timeout"],
            "survived": checked - killed,
            "killed_fraction": killed / checked if checked else None,
            "wilson_95": wilson(killed, checked),
            "survivors": {name: status for name, status in sorted(statuses.items())
                          if status not in KILLED and status != "not checked"}}


def percent(fraction):
    return "-" if fraction is None else f"{fraction:.1%}"


def interval(bounds):
    return "-" if bounds is None else f"{bounds[0]:.0%}-{bounds[1]:.0%}"


def killed(row):
    """The killed fraction, and how many of the kills were timeouts (which can be false)."""
    if not row["timeout"]:
        return percent(row["killed_fraction"])
    return f"{percent(row['killed_fraction'])} ({row['timeout']} timed out)"


def markdown(report):
    lines = [f"Commit {report['commit']}, seed {report['seed']}, {report['minutes']:.0f} minutes in all; "
             "minutes: the wall time mutmut spent on the module's sample.", "",
             "| module | mutants | sampled | checked | killed (or timed out) | 95% interval | "
             "survived | after: checked | after: killed | after: 95% interval | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for module, row in report["modules"].items():
        after = row.get("after", {})
        lines.append(f"| {module} | {row['mutants']} | {row['sampled']} | {row['checked']} | "
                     f"{killed(row)} | {interval(row['wilson_95'])} | "
                     f"{row['survived']} | {after.get('checked', '-')} | "
                     f"{killed(after) if after else '-'} | "
                     f"{interval(after.get('wilson_95'))} | {row['minutes']:.0f} |")
    return "\n".join(lines) + "\n"


def sample_run(args, copy, commit):
    """One ``mutmut run`` over the samples of all modules: its start-up (the whole suite
    under mutmut's tracing, then the tests of the sample once unmutated) costs minutes,
    so paying it once per module would eat the time budget."""
    report = {"commit": commit, "seed": args.seed, "sample": args.sample, "modules": {}}
    names = {module: all_mutants(copy, module) for module in args.modules}
    samples = {module: draw(names[module], args.sample, args.seed, module)
               for module in args.modules}
    start = time.monotonic()
    statuses = run_mutants(copy, [name for sample in samples.values() for name in sample],
                           args.minutes)
    report["minutes"] = (time.monotonic() - start) / 60
    for module, sample in samples.items():
        mine = {name: statuses[name] for name in sample}
        report["modules"][module] = row = {
            "mutants": len(names[module]), "sampled": len(sample),
            "minutes": test_seconds(copy, module, sample) / 60, **summarize(mine),
            "sample": mine}
        print(f"{module:<26} {row['mutants']:>4} mutants, {row['checked']:>3} of "
              f"{row['sampled']} sampled checked, killed {percent(row['killed_fraction'])}, "
              f"{row['minutes']:.1f} min", flush=True)
    return report


def rerun(args, copy, commit):
    """What an earlier report's run did not kill, checked again: each module's ``after``.

    That is the survivors, the mutants it did not reach in its time limit, and the
    timeouts: mutmut's limit is on wall time, and a machine that pauses or is shared
    can make a mutant that the tests let through time out.
    """
    report = json.loads(Path(args.rerun).read_text())
    again = [name for row in report["modules"].values() for name, status in row["sample"].items()
             if status != "killed"]
    start = time.monotonic()
    statuses = run_mutants(copy, again, args.minutes) if again else {}
    report["after_minutes"] = (time.monotonic() - start) / 60
    for row in report["modules"].values():
        after = {name: statuses.get(name, status) for name, status in row["sample"].items()}
        row["after"] = {"commit": commit, **summarize(after)}
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="+", default=MODULES)
    parser.add_argument("--sample", type=int, default=25, help="mutants drawn per module")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=120,
                        help="time limit of the mutmut run; what it did not reach stays unchecked")
    parser.add_argument("--json", default="", help="write the report here")
    parser.add_argument("--markdown", default="", help="write its table here")
    parser.add_argument("--rerun", default="", metavar="REPORT",
                        help="check what the run of REPORT did not kill again; updates REPORT "
                        "(or writes --json)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        copy, commit = copy_of_head(directory)
        report = rerun(args, copy, commit) if args.rerun else sample_run(args, copy, commit)
    table = markdown(report)
    print(table)
    if args.json or args.rerun:
        Path(args.json or args.rerun).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
