"""Gradient-descent optimizers with PyTorch's update rules: SGD, Adam, AdamW.

An optimizer holds a list of :class:`npclust.nn.Parameter` and, on ``step()``,
updates every ``Parameter.data`` in place from its ``Parameter.grad``. The rules,
including where weight decay and ``eps`` enter, are those of ``torch.optim``
(single-tensor implementation); each class docstring states its rule, and its
method ``_rule`` is that rule in plain NumPy, applied parameter by parameter.
``docs/derivations_optim_gradcheck.md`` derives them.

Flat-buffer fast path
---------------------
:func:`npclust.nn.flatten_parameters` (and ``Module.flatten_parameters()``) moves
parameters into one :class:`npclust.nn.FlatBuffer` and each parameter records its
place there (``Parameter.flat``). Consecutive parameters of the optimizer's list
that lie end to end in one buffer form a *run*, which ``_fused_rule`` updates as a
single 1-D view: the same operations in the same order as ``_rule``, so bit for bit
the same result, but written in place into state and scratch arrays allocated on
the first step, so a step allocates nothing and costs a handful of whole-buffer
vector operations whatever the number of layers. Parameters that were not
flattened take the plain rule.

Hyper-parameters are Python floats, so float32 parameters are updated in float32
(NumPy treats Python scalars as "weak").
"""

import math

import numpy as np

from .nn import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _check_parameters(params):
    """``params`` as a list, after checking each is a trainable Parameter."""
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    seen = set()
    for index, parameter in enumerate(params):
        if not isinstance(parameter, Parameter) or not isinstance(parameter.data, np.ndarray) \
                or not isinstance(parameter.grad, np.ndarray):
            raise TypeError(
                f"parameter {index} is a {type(parameter).__name__}, expected an "
                "npclust.nn.Parameter with ndarray .data and .grad"
            )
        data, grad = parameter.data, parameter.grad
        if data.dtype.kind != "f" or grad.dtype != data.dtype or grad.shape != data.shape:
            raise TypeError(
                f"parameter {index} needs floating .data and a .grad of the same shape and dtype, "
                f"got data {data.dtype}{list(data.shape)} and grad {grad.dtype}{list(grad.shape)}"
            )
        if id(parameter) in seen:
            raise ValueError(f"parameter {index} appears more than once in the parameter list")
        seen.add(id(parameter))
    return params


class _Run:
    """Parameters updated as one array: a single parameter, or consecutive ones of a FlatBuffer.

    Attributes
    ----------
    parameters : list of Parameter
    flat : bool
        Whether ``data`` and ``grad`` are 1-D views of a FlatBuffer covering all of
        ``parameters`` (else there is one parameter, updated by the plain rule).
    """

    __slots__ = ("parameters", "flat", "data", "grad", "_buffer", "_start", "_stop")

    def __init__(self, parameter):
        self.parameters = [parameter]
        position = parameter.flat
        self.flat = position is not None
        if self.flat:
            self._buffer, self._start = position
            self._stop = self._start + parameter.data.size
        self.data = parameter.data

    def extend(self, parameter):
        """Take ``parameter`` into this run if it continues it in the same buffer."""
        position = parameter.flat
        if not self.flat or position is None or position != (self._buffer, self._stop):
            return False
        self.parameters.append(parameter)
        self._stop += parameter.data.size
        return True

    def close(self):
        if self.flat:
            self.data = self._buffer.data[self._start:self._stop]
            self.grad = self._buffer.grad[self._start:self._stop]

    def gradient(self):
        """The gradient array of the run, pending lazy zeros written."""
        if not self.flat:
            return self.parameters[0].grad
        for parameter in self.parameters:
            parameter.materialize_grad()
        return self.grad


def _runs(params):
    runs = []
    for parameter in params:
        if not (runs and runs[-1].extend(parameter)):
            runs.append(_Run(parameter))
    for run in runs:
        run.close()
    return runs


# Every array a fused Adam step touches is processed 256 KiB at a time: its dozen
# passes over one block then run while the block sits in cache, which a whole flat
# buffer of parameters, gradients and moments does not.
_BLOCK_BYTES = 1 << 18


class Optimizer:
    """Base class: runs of parameters, the ``step`` loop, ``zero_grad`` and state dicts.

    Subclasses define ``_validate(hyperparameters)``, ``_rule(index, data, grad)``
    (the plain update of one parameter, in place), ``_fused_rule(index, data,
    grad)`` (the same on a flat run, allocation-free) and ``_state_names``.

    Parameters
    ----------
    params : iterable of npclust.nn.Parameter
        Updated in place by :meth:`step`. Every parameter must train: one with
        ``requires_grad=False`` makes :meth:`step` raise (PyTorch skips it, but here
        weight decay and momentum would still move it), so leave frozen parameters out.
    defaults : dict
        Hyper-parameters by name. Each becomes an attribute (``optimizer.lr``) that
        may be changed between steps, e.g. by a learning-rate schedule.

    Attributes
    ----------
    params : list of Parameter
    defaults : dict
        The hyper-parameters given at construction.
    step_count : int
        Number of steps taken (PyTorch's per-parameter ``step``; all parameters step
        together here).
    state : dict of str to list of ndarray
        Optimizer state (e.g. ``"exp_avg"``), one array per run of parameters (see
        the module docstring): shaped like the parameter for a single one, 1-D for
        a flat run. Entries appear on the first step that needs them, as in
        PyTorch. Use :meth:`state_dict` for a per-parameter copy.

    Notes
    -----
    Layout of :meth:`state_dict` (every value a Python number or an ndarray, every
    key a string, so ``np.savez(path, **optimizer.state_dict())`` saves it and
    ``optimizer.load_state_dict(np.load(path))`` restores it):

    * ``"step"``: int, the number of steps taken;
    * one entry per hyper-parameter under its constructor name (``"lr"``,
      ``"momentum"``, ...; ``"betas"`` is a float64 array of shape (2,));
    * ``"<state name>.<i>"``: ndarray shaped like parameter ``i`` (in ``params``
      order), e.g. ``"exp_avg.0"``, ``"momentum_buffer.3"``.
    """

    _state_names = ()

    def __init__(self, params, defaults):
        self.params = _check_parameters(params)
        self.defaults = dict(defaults)
        self._set_hyperparameters(self.defaults)
        self.step_count = 0
        self.state = {}
        self._arrange()

    # ------------------------------------------------------------ hyper-parameters
    def _validate(self, hyperparameters):
        raise NotImplementedError

    def _set_hyperparameters(self, hyperparameters):
        self._validate(hyperparameters)
        for name, value in hyperparameters.items():
            # Python scalars keep float32 arithmetic in float32 (NumPy scalars would not).
            if isinstance(self.defaults[name], bool):
                value = bool(value)
            elif isinstance(self.defaults[name], tuple):
                value = tuple(float(item) for item in np.asarray(value).ravel())
            else:
                value = float(value)
            setattr(self, name, value)

    # ---------------------------------------------------------------------- layout
    def _arrange(self):
        """Group the parameters into runs for their current arrays and flat buffers."""
        self._runs = _runs(self.params)
        # What the runs were built from, to notice flatten_parameters() or to() later.
        self._arranged_from = [(parameter.data, parameter.flat) for parameter in self.params]
        self._scratch = {}

    def _follow_rebinding(self):
        """Rebuild the runs, carrying the state over, if any parameter was rebound.

        ``Module.flatten_parameters()`` and ``Module.to()`` replace ``.data`` and
        ``.grad`` with new arrays; updating the old ones would silently do nothing.
        """
        for parameter, (data, flat) in zip(self.params, self._arranged_from):
            if parameter.data is not data or parameter.flat != flat:
                state = self.state_dict()
                self._arrange()
                self.load_state_dict(state)
                return

    @property
    def uses_flat_buffer(self):
        """Whether all parameters form one flat run, updated as one array (see module docstring)."""
        return len(self._runs) == 1 and self._runs[0].flat

    def _parameter_views(self, arrays):
        """Split state arrays (one per run) into one view per parameter, shaped like it."""
        views = []
        for run, array in zip(self._runs, arrays):
            if not run.flat:
                views.append(array)
                continue
            offset = 0
            for parameter in run.parameters:
                size = parameter.data.size
                views.append(array[offset:offset + size].reshape(parameter.data.shape))
                offset += size
        return views

    def _state(self, name):
        """State ``name``, zeros shaped like each run's data until a step updates it."""
        arrays = self.state.get(name)
        if arrays is None:
            arrays = self.state[name] = [np.zeros_like(run.data) for run in self._runs]
        return arrays

    def _scratch_buffer(self, name, index):
        """An array shaped like run ``index``, allocated on first use and reused after."""
        buffers = self._scratch.setdefault(name, {})
        if index not in buffers:
            buffers[index] = np.empty_like(self._runs[index].data)
        return buffers[index]

    # ------------------------------------------------------------------- stepping
    def step(self):
        """Update every parameter in place from its ``.grad`` (one optimization step)."""
        for index, parameter in enumerate(self.params):
            if not parameter.requires_grad:
                raise RuntimeError(
                    f"parameter {index} has requires_grad=False; build the optimizer from the "
                    "trainable parameters only, or call requires_grad_(True) before step()"
                )
        self._follow_rebinding()
        self.step_count += 1
        for index, run in enumerate(self._runs):
            update = self._fused_rule if run.flat else self._rule
            update(index, run.data, run.gradient())

    def _rule(self, index, data, grad):
        raise NotImplementedError

    def _fused_rule(self, index, data, grad):
        raise NotImplementedError

    def zero_grad(self):
        """Set every parameter's ``.grad`` to zero (lazily, see :class:`npclust.nn.Parameter`).

        The arrays stay the same, so views stay views; the next backward writes its
        gradient instead of adding it to a filled zero.
        """
        for parameter in self.params:
            parameter.zero_grad()

    # ---------------------------------------------------------------- state dicts
    def state_dict(self):
        """Copy of the step count, hyper-parameters and per-parameter state.

        Returns
        -------
        dict of str to int, float, bool or ndarray
            Layout described in the class Notes; independent of whether the flat
            fast path is in use, so it loads into an optimizer with either layout.
        """
        state = {"step": self.step_count}
        for name in self.defaults:
            value = getattr(self, name)
            state[name] = np.array(value, dtype=np.float64) if isinstance(value, tuple) else value
        for name, arrays in self.state.items():
            for index, view in enumerate(self._parameter_views(arrays)):
                state[f"{name}.{index}"] = view.copy()
        return state

    def load_state_dict(self, state_dict):
        """Restore the step count, hyper-parameters and state saved by :meth:`state_dict`.

        Parameters
        ----------
        state_dict : mapping of str to number or array_like
            For example the output of :meth:`state_dict`, or the ``NpzFile`` that
            ``np.load`` returns for it (0-d arrays are accepted for numbers).
            Arrays are copied and cast to the parameters' dtype.

        Returns
        -------
        self
        """
        n_params = len(self.params)
        state_keys = {
            f"{name}.{index}": (name, index)
            for name in self._state_names
            for index in range(n_params)
        }
        allowed = {"step", *self.defaults, *state_keys}
        missing = [key for key in ("step", *self.defaults) if key not in state_dict]
        unexpected = [key for key in state_dict if key not in allowed]
        if missing or unexpected:
            raise KeyError(
                f"state_dict does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        present_names = {state_keys[key][0] for key in state_dict if key in state_keys}
        for name in present_names:
            incomplete = [f"{name}.{i}" for i in range(n_params) if f"{name}.{i}" not in state_dict]
            if incomplete:
                raise KeyError(f"state_dict has {name!r} for some parameters but not {incomplete}")
            for index, parameter in enumerate(self.params):
                shape = np.shape(state_dict[f"{name}.{index}"])
                if shape != parameter.data.shape:
                    raise ValueError(
                        f"shape mismatch for {name}.{index}: parameter has "
                        f"{parameter.data.shape}, state_dict has {shape}"
                    )
        self._set_hyperparameters({name: state_dict[name] for name in self.defaults})
        self.step_count = int(state_dict["step"])
        self.state = {}
        for name in present_names:
            arrays = self._state(name)
            for index, view in enumerate(self._parameter_views(arrays)):
                view[...] = state_dict[f"{name}.{index}"]
        return self

    def __repr__(self):
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.defaults)
        return f"{type(self).__name__}({settings})"


def _check_non_negative(name, value):
    # ``not value >= 0`` also rejects NaN.
    if not value >= 0.0:
        raise ValueError(f"Invalid {name}: {float(value)!r} (must be >= 0)")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov and weight decay.

    With ``g`` the gradient, ``p`` the parameter and ``b`` the momentum buffer,
    one step is (PyTorch's rule)::

        g = g + weight_decay * p                      # if weight_decay != 0
        b = g                                         # first step
        b = momentum * b + (1 - dampening) * g        # later steps
        g = g + momentum * b  if nesterov  else  b    # if momentum != 0
        p = p - lr * g

    Parameters
    ----------
    params : iterable of npclust.nn.Parameter
    lr : float, default=1e-3
        Learning rate (PyTorch's default).
    momentum : float, default=0.0
    dampening : float, default=0.0
        Scales the new gradient's share of the momentum buffer.
    nesterov : bool, default=False
        Requires ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float, default=0.0
        L2 penalty coefficient, added to the gradient.

    Notes
    -----
    State: ``"momentum_buffer"``, created on the first step with ``momentum != 0``.
    """

    _state_names = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=bool(nesterov),
                        weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _validate(self, hyperparameters):
        _check_non_negative("learning rate", hyperparameters["lr"])
        _check_non_negative("momentum value", hyperparameters["momentum"])
        _check_non_negative("weight_decay value", hyperparameters["weight_decay"])
        if hyperparameters["nesterov"] and (
            hyperparameters["momentum"] <= 0 or hyperparameters["dampening"] != 0
        ):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening, got "
                f"momentum={hyperparameters['momentum']!r}, dampening={hyperparameters['dampening']!r}"
            )

    def _rule(self, index, p, g):
        """One step of the rule in the class docstring for one parameter."""
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            b = self._advance_momentum(index, g)
            g = g + self.momentum * b if self.nesterov else b
        p -= self.lr * g

    def _advance_momentum(self, index, g):
        """The momentum buffer after this step's gradient ``g`` (``b`` in the class docstring)."""
        buffers = self.state.setdefault("momentum_buffer", [None] * len(self._runs))
        if buffers[index] is None:
            # First momentum step: PyTorch starts the buffer at the gradient, not at 0.
            buffers[index] = g.copy()
        else:
            buffers[index] *= self.momentum
            buffers[index] += (1 - self.dampening) * g
        return buffers[index]

    def _fused_rule(self, index, p, g):
        """:meth:`_rule` on a flat run, each temporary written into a reused scratch array."""
        update = self._scratch_buffer("update", index)
        if self.weight_decay != 0:
            decayed = self._scratch_buffer("decayed_gradient", index)
            np.multiply(p, self.weight_decay, out=decayed)
            decayed += g
            g = decayed
        if self.momentum != 0:
            buffers = self.state.setdefault("momentum_buffer", [None] * len(self._runs))
            if buffers[index] is None:
                buffers[index] = g.copy()
            else:
                buffers[index] *= self.momentum
                np.multiply(g, 1 - self.dampening, out=update)
                buffers[index] += update
            if self.nesterov:
                np.multiply(buffers[index], self.momentum, out=update)
                update += g
                g = update
            else:
                g = buffers[index]
        np.multiply(g, self.lr, out=update)
        p -= update


class Adam(Optimizer):
    """Adam with bias correction and L2 weight decay (PyTorch's ``torch.optim.Adam``).

    With ``g`` the gradient, ``p`` the parameter and ``t`` the step number
    (starting at 1), one step is::

        g = g + weight_decay * p                      # if weight_decay != 0
        m = m + (1 - beta1) * (g - m)                 # = beta1 m + (1 - beta1) g
        v = beta2 * v + (1 - beta2) * g**2
        step_size = lr / (1 - beta1**t)
        p = p - m / (sqrt(v) * c + eps / step_size),  c = 1 / (step_size * sqrt(1 - beta2**t))

    which is PyTorch's ``p - step_size * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``
    with the step size moved into the denominator, saving a pass over the
    parameters. When ``c`` or ``eps / step_size`` would overflow the dtype (a
    vanishing step size) the last line is evaluated in PyTorch's form instead.
    ``eps`` is added *after* the bias correction of ``sqrt(v)``, as in PyTorch (the
    paper's ``m_hat / (sqrt(v_hat) + eps)``).

    Parameters
    ----------
    params : iterable of npclust.nn.Parameter
    lr : float, default=1e-3
    betas : (float, float), default=(0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default=1e-8
    weight_decay : float, default=0.0
        L2 penalty coefficient, added to the gradient (see :class:`AdamW` for
        decoupled decay).

    Notes
    -----
    State: ``"exp_avg"`` (m) and ``"exp_avg_sq"`` (v), zeros before the first step.
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    # AdamW shrinks the parameters directly instead of adding to the gradient.
    _decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _validate(self, hyperparameters):
        _check_non_negative("learning rate", hyperparameters["lr"])
        _check_non_negative("epsilon value", hyperparameters["eps"])
        _check_non_negative("weight_decay value", hyperparameters["weight_decay"])
        betas = np.asarray(hyperparameters["betas"], dtype=np.float64).ravel()
        if betas.shape != (2,):
            raise ValueError(f"betas must be a pair of floats, got {hyperparameters['betas']!r}")
        for position, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(
                    f"Invalid beta parameter at index {position}: {float(beta)!r} (must be in [0, 1))"
                )

    def _rule(self, index, p, g):
        """One step of the rule in the class docstring for one parameter."""
        beta1, beta2 = self.betas
        if self.weight_decay != 0:
            if self._decoupled_weight_decay:
                p *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m, v = self._state("exp_avg")[index], self._state("exp_avg_sq")[index]
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * (g * g)
        step_size, root_bias_correction2, c = self._step_constants(p.dtype)
        if step_size == 0:
            return
        if c is not None:
            p -= m / (np.sqrt(v) * c + self.eps / step_size)
        else:
            p -= step_size * (m / (np.sqrt(v) / root_bias_correction2 + self.eps))

    def _step_constants(self, dtype):
        """``(step_size, sqrt(1 - beta2**t), c)``; ``c`` is None where the folded form overflows."""
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.step_count)
        root_bias_correction2 = math.sqrt(1 - beta2 ** self.step_count)
        if step_size == 0:
            return step_size, root_bias_correction2, None
        c = 1 / (step_size * root_bias_correction2)
        folded = max(c, self.eps / step_size) < float(np.finfo(dtype).max)
        return step_size, root_bias_correction2, c if folded else None

    def _fused_rule(self, index, p, g):
        """:meth:`_rule` on a flat run: in place, into reused scratch, cache block by block."""
        m, v = self._state("exp_avg")[index], self._state("exp_avg_sq")[index]
        scratch = self._scratch_buffer("update", index)
        decayed = None
        if self.weight_decay != 0 and not self._decoupled_weight_decay:
            decayed = self._scratch_buffer("decayed_gradient", index)
        constants = self._step_constants(p.dtype)
        block = _BLOCK_BYTES // p.itemsize
        for start in range(0, p.size, block):
            part = slice(start, start + block)
            self._fused_block(p[part], g[part], m[part], v[part], scratch[part],
                              None if decayed is None else decayed[part], *constants)

    def _fused_block(self, p, g, m, v, scratch, decayed, step_size, root_bias_correction2, c):
        beta1, beta2 = self.betas
        if self.weight_decay != 0:
            if decayed is None:
                p *= 1 - self.lr * self.weight_decay
            else:
                np.multiply(p, self.weight_decay, out=decayed)
                decayed += g
                g = decayed
        np.subtract(g, m, out=scratch)
        scratch *= 1 - beta1
        m += scratch

        v *= beta2
        np.multiply(g, g, out=scratch)
        scratch *= 1 - beta2
        v += scratch

        if step_size == 0:
            return
        denominator = np.sqrt(v, out=scratch)
        if c is not None:
            denominator *= c
            denominator += self.eps / step_size
            p -= np.divide(m, denominator, out=scratch)
        else:
            denominator /= root_bias_correction2
            denominator += self.eps
            np.divide(m, denominator, out=scratch)
            scratch *= step_size
            p -= scratch


class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's ``torch.optim.AdamW``).

    Before the Adam update, which uses the raw gradient, the parameters shrink::

        p = p * (1 - lr * weight_decay)

    so the decay is not rescaled by the adaptive denominator, unlike Adam's L2 term.

    Parameters
    ----------
    params : iterable of npclust.nn.Parameter
    lr : float, default=1e-3
    betas : (float, float), default=(0.9, 0.999)
    eps : float, default=1e-8
    weight_decay : float, default=1e-2
        PyTorch's default for AdamW.
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
