"""The training loop every deep estimator shares.

:func:`fit_restarts` owns what IMSAT, DEC and IDEC have in common: ``n_init``
restarts with the kept run chosen by the method's objective, stages run unit by unit
(an epoch, a target update), a mini-batch stream whose position is part of the
state, rollback to the last finite unit on a NaN or infinite loss, checkpoints and
resuming, progress lines with the time remaining for the *whole* fit, and the
history. An estimator supplies only what is its own (the split of PyTorch
Lightning's Trainer and LightningModule):

``_build_model(n_features, rng)``
    Its untrained networks, as a dict of name to :class:`npclust.nn.Module`.
``_stages(n_samples)``
    Its training as a list of :class:`Stage`; each stage's ``run_unit`` takes the
    steps of one unit on a :class:`Run`.
``_objective(model, X)``
    The method's own objective on the whole data (lower is better) and the labels
    the model gives, from one pass over the data: the restart with the lowest
    objective is kept. True labels are never used.
``_set_fitted(model, X, history, evaluation=None)``
    Its fitted attributes from a model, after the last restart or a rollback;
    ``evaluation`` is the kept restart's ``_objective`` result, so the data need
    not be passed through the model again (None after a rollback or a resume).
``_fit_arrays(X, saved)``
    Optional: arrays computed once from the data before the first restart (IMSAT's
    VAT radii), kept in checkpoints so a resumed fit does not recompute them.

Stages marked ``kept_only`` come last and are not run by every restart: once all
restarts have run the other stages and one is kept, only that one is trained on by
them (short restarts suffice to rank runs by the objective; IMSAT's ``restart_epochs``).

Randomness is drawn in one fixed order (networks, then each stage's shuffles and
noise, restart after restart, then the kept stages'), so a fixed ``random_state``
gives bit-for-bit identical fits, resumed or not.
"""

import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .. import metrics, nn
from ..files.archive import json_value
from ..files.checkpoint import TrainingCheckpoint, data_fingerprint

__all__ = ["Stage", "Run", "BatchStream", "Progress", "batch_boundaries", "fit_restarts",
           "report"]

logger = logging.getLogger("npclust")

# Parameters that change how a fit reports or where it saves, not what it computes.
_NOT_IDENTITY = ("verbose", "checkpoint")


@dataclass
class Stage:
    """One stage of a method's training, run unit by unit by :func:`fit_restarts`.

    Attributes
    ----------
    name : str
        Shown in progress lines and stored with each history entry.
    n_units : int
        Units at most (``run_unit`` may stop the stage earlier).
    run_unit : callable
        ``run_unit(run) -> (values, labels, stop)``: the unit's training on the
        :class:`Run`; ``values`` (dict of str to number) become the history entry,
        ``labels`` (or None) are scored against ``y`` when it is known, and
        ``stop`` (False, or a sentence saying why) ends the stage early.
    unit : str, default="epoch"
        What a unit is called in progress lines.
    batch_size : int or None, default=None
        Size of the mini-batches ``run.batches`` hands out (None: no batches).
    optimizer : callable or None, default=None
        ``optimizer(model)`` builds the stage's optimizer (``run.optimizer``).
    begin : callable or None, default=None
        ``begin(run)``, once when the stage starts (not when it is resumed).
    steps_per_unit : int, default=1
        Relative cost of one unit, for the time-remaining estimate.
    kept_only : bool, default=False
        Run only on the restart kept by the objective, after every restart has run the
        other stages (with a fresh optimizer and batch stream, built as for any stage).
        Such stages must come after all the others.
    """

    name: str
    n_units: int
    run_unit: Callable
    unit: str = "epoch"
    batch_size: Optional[int] = None
    optimizer: Optional[Callable] = None
    begin: Optional[Callable] = None
    steps_per_unit: int = 1
    kept_only: bool = False


class Run:
    """What one restart's stages work on (or the kept restart's ``kept_only`` stages).

    Attributes
    ----------
    model : dict of str to Module or Parameter
        The networks (and, once a stage adds them, parameters such as DEC's centers).
    X, y : ndarray
        Training data; ``y`` (or None) only for monitoring.
    rng : numpy.random.Generator
    optimizer : Optimizer or None
        The current stage's.
    batches : BatchStream or None
        The current stage's mini-batches.
    variables : dict of str to ndarray or number
        What a stage keeps from one unit to the next (DEC's target distribution);
        saved in checkpoints.
    fit_arrays : dict of str to ndarray
        The estimator's ``_fit_arrays``.
    """

    def __init__(self, model, X, y, rng, fit_arrays):
        self.model, self.X, self.y, self.rng, self.fit_arrays = model, X, y, rng, fit_arrays
        self.optimizer, self.batches, self.variables = None, None, {}


# ------------------------------------------------------------------ batches
def batch_boundaries(n_samples, batch_size):
    """Start/stop offsets of consecutive batches covering ``n_samples`` rows.

    A final batch of one row cannot be batch-normalised, so it is folded into the
    previous one.

    Parameters
    ----------
    n_samples, batch_size : int

    Returns
    -------
    list of int
        ``[0, batch_size, 2 * batch_size, ..., n_samples]``.
    """
    stops = list(range(batch_size, n_samples, batch_size))
    if stops and n_samples - stops[-1] < 2:
        stops.pop()
    return [0, *stops, n_samples]


class BatchStream:
    """Shuffled mini-batches, one pass over the data after another, resumable.

    Unlike a generator, its position (the current permutation and the next batch)
    can be saved in a checkpoint and restored. Indices within a batch are sorted so
    gathering rows from a memory-mapped array reads the file forward.

    Parameters
    ----------
    n_samples, batch_size : int
    rng : numpy.random.Generator
        Draws one permutation at the start of every pass.
    """

    def __init__(self, n_samples, batch_size, rng):
        self.n_samples, self.rng = n_samples, rng
        self.boundaries = batch_boundaries(n_samples, batch_size)
        self.order, self.position = None, 0

    @property
    def batches_per_pass(self):
        return len(self.boundaries) - 1

    def next(self):
        """The next batch of sorted sample indices."""
        if self.order is None or self.position == self.batches_per_pass:
            self.order, self.position = self.rng.permutation(self.n_samples), 0
        start, stop = self.boundaries[self.position], self.boundaries[self.position + 1]
        self.position += 1
        return np.sort(self.order[start:stop])

    def epoch(self):
        """The batches of one whole pass over the data."""
        return [self.next() for _ in range(self.batches_per_pass)]

    def state(self):
        """Arrays that restore the position with :meth:`load_state`."""
        order = self.order if self.order is not None else np.zeros(0, dtype=np.int64)
        return {"order": order, "position": self.position}

    def load_state(self, state):
        """Continue from a position saved by :meth:`state`.

        Parameters
        ----------
        state : dict of str to ndarray or int

        Raises
        ------
        ValueError
            ``order`` is not a permutation of the samples or ``position`` is out of
            range (a corrupted checkpoint would otherwise train on the wrong rows).
        """
        order = np.asarray(state["order"])
        position = int(state["position"])
        if order.size and (order.shape != (self.n_samples,) or order.dtype.kind not in "iu"
                           or not np.array_equal(np.sort(order), np.arange(self.n_samples))):
            raise ValueError(f"the batch order is not a permutation of {self.n_samples} samples")
        if not 0 <= position <= self.batches_per_pass:
            raise ValueError(f"batch position {position} is outside [0, {self.batches_per_pass}]")
        self.order = order if order.size else None
        self.position = position


# ------------------------------------------------------------ model states
def model_state(model):
    """Copies of every array of ``model``: ``name/key`` for modules, ``name`` for parameters."""
    state = {}
    for name, part in model.items():
        if isinstance(part, nn.Parameter):
            state[name] = part.data.copy()
        else:
            state.update(_prefixed(name, part.state_dict()))
    return state


def load_model_state(model, state):
    """Write ``state`` (from :func:`model_state`) into ``model``; a bare name absent from
    ``model`` becomes a new :class:`npclust.nn.Parameter` (a stage added it)."""
    for name, part in model.items():
        if not isinstance(part, nn.Parameter):
            part.load_state_dict(_unprefixed(name, state))
    for name, value in state.items():
        if "/" in name:
            continue
        if name in model:
            model[name].data[...] = value
        else:
            model[name] = nn.Parameter(np.array(value))


def _prefixed(prefix, state):
    return {f"{prefix}/{key}": value for key, value in state.items()}


def _unprefixed(prefix, arrays):
    start = len(prefix) + 1
    return {key[start:]: value for key, value in arrays.items() if key.startswith(prefix + "/")}


# ----------------------------------------------------------------- progress
def report(verbose, message):
    """A one-off progress message: logged, and printed to stderr if ``verbose``.

    Parameters
    ----------
    verbose : int
    message : str
    """
    logger.info(message)
    if verbose:
        # Progress goes to stderr so that labels written to stdout stay clean.
        print(message, file=sys.stderr, flush=True)


class Progress:
    """History entries and progress lines with the time remaining for the whole fit.

    The remaining time is extrapolated from the work done since this call to ``fit``
    began, counting each unit as its stage's ``steps_per_unit``.

    Parameters
    ----------
    verbose : int
        0 prints nothing; 1 prints one line per unit to stderr. Lines also go to the
        ``npclust`` logger at INFO level.
    y : ndarray or None
        Ground-truth labels, for monitoring only (ACC/NMI/ARI in the history).
    total_steps : int
        Work of the whole fit, in steps.
    done_steps : int, default=0
        Work already done when this call began (a resumed fit).
    """

    def __init__(self, verbose, y, total_steps, done_steps=0):
        self.verbose, self.y = verbose, y
        self.total_steps, self.done_steps, self.start_steps = total_steps, done_steps, done_steps
        self.start = time.perf_counter()

    def record(self, label, stage, unit, values, labels):
        """The history entry of one unit of ``stage``; printed if verbose.

        Parameters
        ----------
        label : str
            The stage as shown (``"restart 2/4 train"``).
        stage : Stage
        unit : int
            Units of the stage done, this one included.
        values : dict of str to number
        labels : ndarray or None
            Scored against ``y`` when both are known.

        Returns
        -------
        dict
        """
        entry = {"stage": label, "epoch": unit}
        entry.update({name: int(value) if isinstance(value, (int, np.integer)) else float(value)
                      for name, value in values.items()})
        if self.y is not None and labels is not None:
            entry["acc"] = metrics.clustering_accuracy(self.y, labels)
            entry["nmi"] = metrics.normalized_mutual_info_score(self.y, labels)
            entry["ari"] = metrics.adjusted_rand_score(self.y, labels)
        elapsed = time.perf_counter() - self.start
        entry["elapsed"] = elapsed
        self.done_steps += stage.steps_per_unit
        done_here = self.done_steps - self.start_steps
        remaining = elapsed / done_here * (self.total_steps - self.done_steps) if done_here else 0.0
        shown = "  ".join(
            f"{name} {value}" if isinstance(value, int) else f"{name} {value:.4f}"
            for name, value in entry.items() if name not in ("stage", "epoch", "elapsed"))
        report(self.verbose, f"[{label}] {stage.unit} {unit}/{stage.n_units}  {shown}  "
                             f"elapsed {elapsed:.1f}s  remaining {remaining:.1f}s")
        return entry


# --------------------------------------------------------------------- loop
def fit_restarts(estimator, X, y, rng):
    """Train ``estimator`` on ``X``: every restart, every stage, and set its fitted attributes.

    Each restart runs the stages that are not ``kept_only``; the restart with the
    lowest objective is kept and, if there are ``kept_only`` stages, trained on by them.

    Parameters
    ----------
    estimator : ClusteringEstimator
        Provides the hooks listed in the module docstring, and ``n_init``,
        ``verbose`` and ``checkpoint``.
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
        Monitoring only.
    rng : numpy.random.Generator

    Raises
    ------
    FloatingPointError
        A loss became NaN or infinite; the estimator keeps the weights of the last
        completed unit (and is fitted with them if they can cluster yet).
    ValueError
        The estimator's stages put a ``kept_only`` stage before another one, or the
        checkpoint does not fit this fit.
    """
    name, n_init = type(estimator).__name__, estimator.n_init
    stages = estimator._stages(X.shape[0])
    # stages[:n_restart_stages] train every restart, the rest only the kept one.
    n_restart_stages = next((index for index, stage in enumerate(stages) if stage.kept_only),
                            len(stages))
    kept_stages = stages[n_restart_stages:]
    if not all(stage.kept_only for stage in kept_stages):
        raise ValueError(f"{name}._stages() puts a kept_only stage before one that every "
                         "restart runs; kept_only stages must come last")
    checkpoint = _open_checkpoint(estimator, X)
    saved = checkpoint.load() if checkpoint else None
    position, saved_arrays = _resume_position(saved, stages, n_restart_stages, n_init, checkpoint)
    fit_arrays = estimator._fit_arrays(X, _unprefixed("fit", saved_arrays))
    steps_per_restart = _steps(stages[:n_restart_stages])
    done_steps = 0
    if saved:
        # Position restart == n_init is the kept stages' phase, after every restart.
        phase_start = 0 if position["restart"] < n_init else n_restart_stages
        done_steps = (position["restart"] * steps_per_restart
                      + _steps(stages[phase_start:position["stage"]])
                      + position["unit"] * stages[position["stage"]].steps_per_unit)
    progress = Progress(estimator.verbose, y,
                        n_init * steps_per_restart + _steps(kept_stages), done_steps)
    if saved:
        stage = stages[position["stage"]]
        where = (f"restart {position['restart'] + 1}/{n_init}" if position["restart"] < n_init
                 else f"kept restart {position['best']['restart'] + 1}/{n_init}")
        report(estimator.verbose, f"resuming from {str(checkpoint.path)!r}: {where}, "
               f"{stage.name} {stage.unit} {position['unit']} of {stage.n_units} done "
               f"({100 * done_steps / progress.total_steps:.0f}% of the fit)")
    best = position["best"]
    best_arrays = _unprefixed("best", saved_arrays)
    best_evaluation = None
    # Every completed restart's history, for plots that show what restarts did.
    finished = position.get("finished", [])

    def save(restart, stage_index, unit, stage_done, run, history, reason):
        if checkpoint is None:
            return
        arrays = {**_prefixed("fit", fit_arrays), **_prefixed("best", best_arrays),
                  **_prefixed("model", model_state(run.model)),
                  **_prefixed("variables", run.variables)}
        if run.optimizer is not None:
            arrays.update(_prefixed("optimizer", run.optimizer.state_dict()))
        if run.batches is not None:
            arrays.update(_prefixed("batches", run.batches.state()))
        checkpoint.save({"restart": restart, "stage": stage_index, "unit": unit,
                         "stage_done": stage_done, "history": history, "best": best,
                         "finished": finished, "stopped": reason}, rng, arrays)

    def run_stages(run, restart, first_stage, stop_stage, shown_restart, history):
        """Run ``stages[first_stage:stop_stage]`` on ``run`` unit by unit; return the
        history and why the last stage ended.

        ``restart`` is the position saved after every unit; the run resumes from the
        checkpoint instead if that is where it stopped. History entries and progress
        lines name the restart ``shown_restart``.
        """
        reason = "no training needed"
        if saved is not None and restart == position["restart"]:
            _restore(checkpoint, load_model_state, run.model, _unprefixed("model", saved_arrays))
            rng.bit_generator.state = position["rng_state"]
            history, first_stage = position["history"], position["stage"]
            reason = position.get("stopped", reason)
        for stage_index in range(first_stage, stop_stage):
            stage = stages[stage_index]
            label = f"restart {shown_restart + 1}/{n_init} {stage.name}" if n_init > 1 else stage.name
            run.optimizer = stage.optimizer(run.model) if stage.optimizer else None
            run.batches = (BatchStream(X.shape[0], stage.batch_size, rng)
                           if stage.batch_size else None)
            unit, stage_done = 0, False
            if saved is not None and (restart, stage_index) == (position["restart"],
                                                                 position["stage"]):
                unit, stage_done = position["unit"], position["stage_done"]
                _restore(checkpoint, _load_stage_state, run, saved_arrays)
            else:
                run.variables = {}
                if stage.begin:
                    stage.begin(run)
            while not stage_done and unit < stage.n_units:
                last_good = model_state(run.model)
                values, labels, stop = stage.run_unit(run)
                unit += 1
                diverged = _first_non_finite(values)
                if diverged:
                    load_model_state(run.model, last_good)
                    estimator._set_fitted(run.model, X, history)
                    raise FloatingPointError(
                        f"{name} {stage.name} {diverged} became {values[diverged]} during "
                        f"training; the weights from the last completed {stage.unit} were "
                        "restored. Try a smaller learning rate or check the input scale.")
                history.append(progress.record(label, stage, unit, values, labels))
                stage_done = bool(stop) or unit == stage.n_units
                if stage_done:
                    reason = stop or f"{stage.n_units} {stage.unit}s of {stage.name} done"
                save(restart, stage_index, unit, stage_done, run, history, reason)
        return history, reason

    for restart in range(position["restart"], n_init):
        run = Run(estimator._build_model(X.shape[1], rng), X, y, rng, fit_arrays)
        history, reason = run_stages(run, restart, 0, n_restart_stages, restart, [])
        evaluation = estimator._objective(run.model, X)
        objective = evaluation[0]
        finished.append(history)
        if best is None or objective < best["objective"]:
            best_evaluation = evaluation
            best = {"objective": objective, "history": history, "restart": restart,
                    "stopped": reason}
            best_arrays = model_state(run.model)
        # Free this restart's networks, gradients and optimizer moments before the
        # next restart builds its own, rather than holding both at once.
        del run
    if n_init > 1:
        report(estimator.verbose, f"kept restart {best['restart'] + 1}/{n_init}: lowest "
               f"objective {best['objective']:.4f}"
               + ("; training it on" if kept_stages else ""))
    model = estimator._build_model(X.shape[1], rng=0)
    load_model_state(model, best_arrays)
    history, reason = best["history"], best.get("stopped", "")
    if kept_stages:
        # A copy: restart_histories_ keeps the kept restart's history as it was.
        history, reason = run_stages(Run(model, X, y, rng, fit_arrays), n_init, n_restart_stages,
                                     len(stages), best["restart"], list(history))
        best_evaluation = estimator._objective(model, X)
    estimator._set_fitted(model, X, history, best_evaluation)
    estimator.restart_histories_ = finished
    estimator.stop_reason_ = reason


def _steps(stages):
    """The work of running ``stages`` through, for the time-remaining estimate."""
    return sum(stage.n_units * stage.steps_per_unit for stage in stages)


def _open_checkpoint(estimator, X):
    path = getattr(estimator, "checkpoint", None)
    if path is None:
        return None
    params = {key: json_value(value) for key, value in estimator.get_params().items()
              if key not in _NOT_IDENTITY}
    return TrainingCheckpoint(path, {"class": type(estimator).__name__, "params": params,
                                     "data": data_fingerprint(X)})


def _resume_position(saved, stages, n_restart_stages, n_init, checkpoint):
    """Where a checkpoint stopped, checked against the fit, with its arrays; the start when
    there is none.

    Restart ``n_init`` is the phase after the restarts, when the ``kept_only`` stages
    (``stages[n_restart_stages:]``) train the kept restart on.
    """
    if saved is None:
        return {"restart": 0, "best": None}, {}
    progress, rng_state, arrays = saved
    corrupted = f"checkpoint {str(checkpoint.path)!r} is corrupted"
    expected = {"restart": int, "stage": int, "unit": int, "stage_done": bool,
                "history": list, "best": (dict, type(None)), "finished": list}
    if any(not isinstance(progress.get(key), kind) for key, kind in expected.items()):
        raise ValueError(f"{corrupted} (its training position is malformed)")
    restart, stage, unit, best = (progress[key] for key in ("restart", "stage", "unit", "best"))
    # The restarts before the position are complete, and the kept one is among them.
    if (best is None) != (restart == 0) or (best is not None and best["restart"] >= restart):
        raise ValueError(f"{corrupted} (its training position is malformed)")
    has_kept = n_restart_stages < len(stages)
    if not (0 <= restart < n_init or (restart == n_init and has_kept)):
        raise ValueError(f"{corrupted} (its training position lies beyond the fit: restart "
                         f"index {restart} with n_init = {n_init}"
                         + (", and no stage trains the kept restart on)" if restart == n_init
                            else ")"))
    phase = range(n_restart_stages) if restart < n_init else range(n_restart_stages, len(stages))
    if stage not in phase or unit > stages[stage].n_units:
        raise ValueError(f"{corrupted} (its training position lies beyond the fit)")
    return {**progress, "rng_state": rng_state}, arrays


def _restore(checkpoint, load, *args):
    """``load(*args)``; arrays that do not fit the model are a corrupted checkpoint."""
    try:
        load(*args)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ValueError(f"checkpoint {str(checkpoint.path)!r} is corrupted (its arrays do not "
                         f"fit this fit: {str(error)[:200]})") from None


def _load_stage_state(run, arrays):
    if run.optimizer is not None:
        run.optimizer.load_state_dict(_unprefixed("optimizer", arrays))
    if run.batches is not None:
        run.batches.load_state(_unprefixed("batches", arrays))
    run.variables = {key: value.item() if value.ndim == 0 else value
                     for key, value in _unprefixed("variables", arrays).items()}


def _first_non_finite(values):
    """The name of the first NaN or infinite value, or None."""
    return next((name for name, value in values.items() if not np.isfinite(value)), None)
