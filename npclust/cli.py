"""The ``npclust`` command: ``demo``, ``fit``, ``predict``, ``scan``, ``export-reference``, ``gradcheck``.

Exit status: 0 on success, 1 when a check fails or training diverges, 2 for bad
input (unreadable or malformed files, invalid options). Errors are one line on
stderr, never a traceback.
"""

import argparse
import ast
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from .cluster import ESTIMATORS, load, scan_n_clusters
from .cluster.port_vectors import export_port_vectors
from .datasets import load_digits
from .demo import compare_output_layers, softmax_confidence_cap
from .files.matrix import DataFileError, read_matrix, write_labels, write_probabilities
from .files.output import check_output_path
from .gradcheck.suite import format_gradcheck_table, run_gradcheck_suite
from .metrics import adjusted_rand_score, clustering_accuracy, normalized_mutual_info_score
from .plotting import plot_fit, plot_scan

__all__ = ["main"]

METHODS = ("imsat", "dec", "idec", "kmeans", "spectral")

# --method names other than the class name in lower case.
_METHOD_CLASSES = {"spectral": "SpectralClustering"}


class CommandError(Exception):
    """A problem with the command's input, reported as one line with exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so that files being written are cleaned up.

    A ``BaseException`` like ``KeyboardInterrupt``: no ``except Exception`` on the way
    swallows it, and ``atomic_write`` removes its temporary file on the way out.
    """


def _raise_terminated(signum, frame):
    raise _Terminated


STDOUT = "-"


def _check_outputs(outputs, inputs=()):
    """Refuse, before a long fit rather than after it, every output that could not be written.

    Parameters
    ----------
    outputs : list of (str or None, str)
        Each output path (None when not given, ``-`` for standard output) and the
        option it came from.
    inputs : list of (str, str)
        Files the command reads, and what they are: writing over one is refused.
    """
    seen = {os.path.realpath(path): f"{what} {path!r}" for path, what in inputs if path}
    for path, what in outputs:
        if not path or path == STDOUT:
            continue
        try:
            how = check_output_path(path, what)
        except OSError as error:
            raise CommandError(str(error)) from None
        if how == "file":
            # Two outputs in one file: the second would silently replace the first.
            real = os.path.realpath(path)
            if real in seen:
                raise CommandError(f"{what} {path!r} is the same file as {seen[real]}; give "
                                   "each output its own file")
            seen[real] = f"{what} {path!r}"


def _check_plotting():
    """``--plot`` without matplotlib is known at the start, not after the fit."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CommandError("--plot needs matplotlib; install it with: pip install "
                           "'npclust[plot]'") from None


def _estimator_class(method):
    if method in _METHOD_CLASSES:
        return ESTIMATORS[_METHOD_CLASSES[method]]
    return {name.lower(): cls for name, cls in ESTIMATORS.items()}[method]


# Parameters that have their own option: setting them through --set as well is a
# conflict, refused rather than resolved silently one way or the other.
_OWN_OPTIONS = {"n_clusters": "--n-clusters", "checkpoint": "--checkpoint",
                "random_state": "--seed", "verbose": "--quiet"}


def _parse_settings(pairs):
    """``["lr=1e-3", "hidden_dims=(500, 500)"]`` as a dict of Python literals."""
    settings = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        name = name.strip()
        if not separator or not name:
            raise CommandError(f"--set expects NAME=VALUE, got {pair!r}")
        if name in settings:
            raise CommandError(f"--set {name} is given twice")
        try:
            settings[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            settings[name] = text  # a bare word such as float64
    return settings


def _check_own_options(settings, args):
    """Refuse ``--set NAME=...`` for a parameter that has its own option and was given there."""
    for name, option in _OWN_OPTIONS.items():
        if name not in settings:
            continue
        # --n-clusters is required and --seed has a default: both always have a value.
        given = {"checkpoint": args.checkpoint, "verbose": args.quiet or None}.get(name, True)
        if given is not None:
            raise CommandError(f"--set {name}=... conflicts with {option}; use {option} alone")


def _make_estimator(method, n_clusters, seed, verbose, settings):
    estimator = _estimator_class(method)(n_clusters=n_clusters, random_state=seed,
                                         verbose=verbose)
    estimator.set_params(**settings)
    return estimator


def _scores(y, labels):
    return (clustering_accuracy(y, labels), normalized_mutual_info_score(y, labels),
            adjusted_rand_score(y, labels))


# --------------------------------------------------------------------- commands
def _demo(args):
    X, y = load_digits()
    print(f"npclust demo: {X.shape[0]} handwritten digits (UCI, 8x8 pixels scaled to [0, 1]), "
          f"10 clusters, method {args.method}, seed {args.seed}\n", flush=True)
    rows = []
    for method in ("kmeans", args.method):
        estimator = _make_estimator(method, 10, args.seed, int(not args.quiet), {})
        start = time.perf_counter()
        # y only fills the monitoring columns of history_ (and the plot); fit ignores it.
        labels = estimator.fit(X, y).labels_
        rows.append((type(estimator).__name__, *_scores(y, labels),
                     np.bincount(labels, minlength=10).min(),
                     estimator.predict_proba(X).max(axis=1).mean(),
                     time.perf_counter() - start))
    print(f"\n{'method':<8} {'ACC':>6} {'NMI':>6} {'ARI':>6} {'smallest':>9} "
          f"{'mean max-p':>10} {'time':>7}")
    for name, acc, nmi, ari, smallest, confidence, seconds in rows:
        print(f"{name:<8} {acc:6.3f} {nmi:6.3f} {ari:6.3f} {smallest:9d} {confidence:10.3f} "
              f"{seconds:6.1f}s")
    print("(ACC: accuracy under the best one-to-one cluster-to-digit mapping; labels are used "
          "only for these scores.)")
    if args.plot:
        plot_fit(estimator, X, args.plot, y=y)
        print(f"plot written to {args.plot}")

    confidence = compare_output_layers(X, 10, random_state=args.seed)
    print("\nWhy linear logits: the same small network trained on the information loss,")
    print("with and without a sigmoid between its last layer and the softmax:")
    print(f"  sigmoid-fed softmax: mean max-probability {confidence['sigmoid']:.3f} "
          f"(cap for logits in (0, 1) and 10 clusters: e/(e+9) = {confidence['cap']:.4f})")
    print(f"  linear logits:       mean max-probability {confidence['linear']:.3f}")
    print(f"  two clusters, logits in (-1, 1): cap {softmax_confidence_cap(2, -1.0, 1.0):.4f}; "
          "see docs/derivations.md")
    return 0


def _fit(args):
    settings = _parse_settings(args.set)
    _check_own_options(settings, args)
    checkpoint = settings.get("checkpoint", args.checkpoint)
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise CommandError(f"--set checkpoint must be a file name, got {checkpoint!r}")
    _check_outputs([(args.output, "--output"), (args.proba, "--proba"), (args.save, "--save"),
                    (checkpoint, "--set checkpoint" if "checkpoint" in settings else "--checkpoint"),
                    (args.plot, "--plot")], inputs=[(args.data, "the data file")])
    if args.plot:
        _check_plotting()
    if args.checkpoint:
        settings["checkpoint"] = args.checkpoint
    X = read_matrix(args.data, dtype=np.float64 if settings.get("dtype") == "float64"
                    else np.float32)
    estimator = _make_estimator(args.method, args.n_clusters, args.seed, int(not args.quiet),
                                settings)
    # NumPy's overflow warnings from a diverging fit would bury the one-line error that
    # explains it; they are shown (once each, as one line) only if the fit succeeds.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            labels = estimator.fit_predict(X)
        except (TypeError, ValueError) as error:
            raise CommandError(str(error)) from None
    for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
        print(f"npclust fit: warning: {message}", file=sys.stderr)
    # The labels first: if the model or the plot cannot be written after all (a full
    # disk, a directory removed during the fit), the result of the fit is not lost.
    _emit_labels(labels, args.output)
    try:
        if args.proba:
            write_probabilities(args.proba, estimator.predict_proba(X), what="--proba")
            print(f"soft assignments written to {args.proba}", file=sys.stderr)
        if args.save:
            estimator.save(args.save)
            print(f"model saved to {args.save}", file=sys.stderr)
        if args.plot:
            plot_fit(estimator, X, args.plot)
            print(f"plot written to {args.plot}", file=sys.stderr)
    except OSError as error:
        where = "standard output" if args.output in (None, STDOUT) else args.output
        raise CommandError(f"{error} (the labels were written to {where})") from None
    if getattr(estimator, "stop_reason_", ""):
        print(f"training stopped: {estimator.stop_reason_}", file=sys.stderr)
    if checkpoint is not None and Path(checkpoint).is_file():
        # The fit is complete and its results written: the checkpoint only costs disk
        # space now, and a rerun would start from the finished state, not afresh.
        Path(checkpoint).unlink()
        print(f"checkpoint {checkpoint} removed: the fit is complete", file=sys.stderr)
    sizes = np.bincount(labels, minlength=args.n_clusters)
    used = np.count_nonzero(sizes)
    print(f"{X.shape[0]} samples in {used} cluster{'' if used == 1 else 's'} "
          f"(sizes {sizes.min()} to {sizes.max()})", file=sys.stderr)
    return 0


def _predict(args):
    _check_outputs([(args.output, "--output"), (args.proba, "--proba")],
                   inputs=[(args.data, "the data file"), (args.model, "the model file")])
    estimator = load(args.model)
    X = read_matrix(args.data, dtype=estimator._dtype())
    if X.shape[1] != estimator.n_features_in_:
        raise CommandError(
            f"{args.data} has {X.shape[1]} features, but the model in {args.model} was "
            f"fitted with {estimator.n_features_in_} features"
        )
    _emit_labels(estimator.predict(X), args.output)
    if args.proba:
        write_probabilities(args.proba, estimator.predict_proba(X), what="--proba")
        print(f"soft assignments written to {args.proba}", file=sys.stderr)
    return 0


def _emit_labels(labels, output):
    if output and output != STDOUT:
        write_labels(output, labels, what="--output")
        print(f"labels written to {output}", file=sys.stderr)
    else:
        sys.stdout.write("label\n" + "".join(f"{label}\n" for label in labels))
        sys.stdout.flush()


def _export_reference(args):
    _check_outputs([(args.out, "--out")], inputs=[(args.model, "the model file")])
    header = export_port_vectors(load(args.model), args.out, args.n_samples, args.seed)
    print(f"{header['class']} reference written to {args.out}: {header['n_samples']} samples, "
          f"loss {header['loss']} = {header['loss_value']:.10g}")
    return 0


def _scan(args):
    X = read_matrix(args.data, dtype=np.float64)
    first, _, last = args.n_clusters.partition(":")
    try:
        candidates = range(int(first), int(last or first) + 1)
    except ValueError:
        candidates = range(0)
    if not candidates:
        raise CommandError(f"--n-clusters expects FIRST:LAST with FIRST <= LAST, e.g. 2:15, "
                           f"got {args.n_clusters!r}")
    estimator = _make_estimator(args.method, candidates[0], args.seed, 0, _parse_settings(args.set))
    try:
        rows, best = scan_n_clusters(estimator, X, candidates, n_resamples=args.resamples,
                                     random_state=args.seed)
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from None
    print(f"{'k':>3} {'silhouette':>10} {'stability (ARI)':>16}")
    for row in rows:
        mark = "  <- suggested" if row["n_clusters"] == best else ""
        print(f"{row['n_clusters']:>3} {row['silhouette']:10.4f} "
              f"{row['stability']:9.3f} ± {row['stability_std']:.3f}{mark}")
    print(f"suggested number of clusters: {best} (highest silhouette; see docs/methods.md "
          "for how often that is right)")
    if args.plot:
        plot_scan(rows, best, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _gradcheck(args):
    results = run_gradcheck_suite(seed=args.seed)
    print(format_gradcheck_table(results))
    failed = [result.name for result in results if not result.passed]
    if failed:
        print(f"{len(failed)} of {len(results)} gradients FAILED: {', '.join(failed)}")
        return 1
    print(f"all {len(results)} gradients match central finite differences")
    return 0


# ----------------------------------------------------------------------- parser
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default, except where there is none to show (None, False, [])."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == [] or \
                action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _parser():
    parser = _ArgumentParser(
        prog="npclust", description="Deep clustering in pure NumPy (DEC, IDEC, IMSAT).")
    parser.add_argument("--version", action="version", version=f"npclust {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help):
        return commands.add_parser(name, help=help, description=help,
                                   formatter_class=_HelpFormatter)

    def data_argument(sub):
        sub.add_argument("data", help="samples as rows: .npy, .npz (array 'X') or .csv")

    def method_option(sub, choices, default):
        sub.add_argument("--method", choices=choices, default=default,
                         help="the clustering method")

    def seed_option(sub, what="seeds every random choice: a fixed seed repeats the fit"):
        sub.add_argument("--seed", type=int, default=0, help=what)

    def set_option(sub):
        sub.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                         help="any estimator parameter, e.g. --set epochs=20 (repeatable)")

    def output_options(sub):
        sub.add_argument("--output", help="write the labels here (CSV); '-' or none: "
                                          "standard output")
        sub.add_argument("--proba", metavar="CSV", help="write the soft assignments here "
                                                        "(a column per cluster)")

    demo = command("demo", "cluster the embedded digits and compare with k-means")
    method_option(demo, METHODS[:3], "imsat")
    seed_option(demo)
    demo.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    demo.add_argument("--plot", metavar="PNG", help="save the embedding, training curves and "
                      "confusion matrix here (needs matplotlib)")
    demo.set_defaults(run=_demo)

    fit = command("fit", "cluster a data file (.npy, .npz or .csv)")
    data_argument(fit)
    fit.add_argument("--n-clusters", type=int, required=True, metavar="K",
                     help="the number of clusters (required; 'npclust scan' suggests one)")
    method_option(fit, METHODS, "imsat")
    seed_option(fit)
    set_option(fit)
    output_options(fit)
    fit.add_argument("--save", metavar="NPZ", help="save the fitted model here")
    fit.add_argument("--checkpoint", metavar="PATH",
                     help="write the training state here after every epoch; rerunning the "
                          "same command resumes an interrupted fit from it; removed when the "
                          "fit completes")
    fit.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    fit.add_argument("--plot", metavar="PNG", help="save the embedding and training curves "
                     "here (needs matplotlib)")
    fit.set_defaults(run=_fit)

    predict = command("predict", "label a data file with a saved model")
    predict.add_argument("model", help="a model saved by 'npclust fit --save'")
    data_argument(predict)
    output_options(predict)
    predict.set_defaults(run=_predict)

    scan = command("scan", "suggest a number of clusters: silhouette and stability for each k")
    data_argument(scan)
    scan.add_argument("--n-clusters", default="2:15", metavar="FIRST:LAST",
                      help="the candidate numbers of clusters")
    method_option(scan, METHODS, "kmeans")
    seed_option(scan, "seeds the subsamples and the fits")
    scan.add_argument("--resamples", type=int, default=6,
                      help="subsamples (80%% of the data each) per k for the stability")
    set_option(scan)
    scan.add_argument("--plot", metavar="PNG", help="draw both criteria against k here "
                      "(needs matplotlib)")
    scan.set_defaults(run=_scan)

    reference = command(
        "export-reference",
        "write a model's input, outputs, loss and every gradient for checking a port")
    reference.add_argument("model", help="a model saved by 'npclust fit --save' (IMSAT/DEC/IDEC)")
    reference.add_argument("--out", required=True, metavar="NPZ",
                           help="the reference file to write (required)")
    reference.add_argument("--n-samples", type=int, default=16,
                           help="rows of the input batch (at least 2)")
    seed_option(reference, "seeds the input batch")
    reference.set_defaults(run=_export_reference)

    gradcheck = command("gradcheck", "check every backward pass against finite differences")
    seed_option(gradcheck, "seeds the random inputs of the checks")
    gradcheck.set_defaults(run=_gradcheck)
    return parser


def main(argv=None):
    """Run the ``npclust`` command; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # usage error (already printed) or --help
        return exit.code
    # SIGTERM becomes an exception, so the file being written is cleaned up like on
    # Ctrl-C. Only here, in the command: a library must not take over signals.
    previous = None
    if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return args.run(args)
    except _Terminated:
        print(f"npclust {args.command}: terminated", file=sys.stderr)
        return 143
    except MemoryError:
        print(f"npclust {args.command}: error: not enough memory (the data or the settings "
              "ask for more than this machine has)", file=sys.stderr)
        return 1
    except (CommandError, DataFileError, FileNotFoundError) as error:
        print(f"npclust {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, ImportError) as error:
        print(f"npclust {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        print(f"npclust {args.command}: training failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"npclust {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
