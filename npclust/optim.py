"""Gradient-descent optimizers with PyTorch's update rules: SGD, Adam, AdamW.

An optimizer holds a list of :class:`npclust.nn.Parameter` and, on ``step()``,
updates every ``Parameter.data`` in place from its ``Parameter.grad``. The rules,
including where weight decay and ``eps`` enter, are those of ``torch.optim``
(single-tensor implementation) and are written out in each class docstring and in
``docs/derivations_optim_gradcheck.md``.

Flat-buffer fast path
---------------------
After :meth:`npclust.nn.Module.flatten_parameters`, every parameter's ``.data`` is a
view into one contiguous 1-D buffer, laid end to end in ``parameters()`` order, and
likewise every ``.grad``. An optimizer detects that layout and works on the single
1-D view ``buffer[start:stop]`` that covers all parameters, so a step is a handful of
whole-buffer vector operations whatever the number of layers. Otherwise it works on
the parameters' arrays one by one. Both cases run the same code over a list of
arrays (``[flat_view]`` or ``[p.data for p in params]``).

A step allocates nothing after the first one: every operation writes into the
parameters, the optimizer state or scratch buffers allocated on first use, through
``out=`` and in-place operators. Hyper-parameters are Python floats, so float32
parameters are updated in float32 (NumPy treats Python scalars as "weak").
"""

import math

import numpy as np

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "set_num_threads", "get_num_threads"]

# Threads for Adam's elementwise update of large buffers (see set_num_threads).
_num_threads = 1
_pool = None


def set_num_threads(n_threads):
    """Spread Adam's elementwise update over ``n_threads`` threads (default 1).

    NumPy runs elementwise operations on one core while its BLAS multiplies
    matrices on several, so on a multi-core machine the optimizer step becomes a
    larger share of a training step as BLAS threads are added. With ``n_threads > 1``
    the cache blocks of a large update (over about a million parameters) are split
    between a pool of threads; NumPy releases the GIL inside each operation. The
    result is bit-for-bit the same. Match it to the BLAS threads and leave it at 1
    when other processes already keep the cores busy.

    Parameters
    ----------
    n_threads : int >= 1
    """
    global _num_threads, _pool
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
    if int(n_threads) != _num_threads and _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None
    _num_threads = int(n_threads)


def get_num_threads():
    """Threads used by Adam's update of large buffers (see :func:`set_num_threads`)."""
    return _num_threads


def _run_split(function, starts):
    """``function(start)`` for every start, split over the configured threads."""
    global _pool
    n_groups = min(_num_threads, len(starts))
    if n_groups < 2:
        for start in starts:
            function(start)
        return
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(max_workers=_num_threads - 1,
                                   thread_name_prefix="npclust-optim")

    def run_group(group):
        for start in group:
            function(start)

    size = -(-len(starts) // n_groups)
    groups = [starts[i:i + size] for i in range(0, len(starts), size)]
    futures = [_pool.submit(run_group, group) for group in groups[1:]]
    try:
        run_group(groups[0])
    finally:
        for future in futures:
            future.result()


def _check_parameters(params):
    """``params`` as a list, after checking each looks like a trainable Parameter."""
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    seen = set()
    for index, parameter in enumerate(params):
        data, grad = getattr(parameter, "data", None), getattr(parameter, "grad", None)
        if not isinstance(data, np.ndarray) or not isinstance(grad, np.ndarray):
            raise TypeError(
                f"parameter {index} is a {type(parameter).__name__}, expected an "
                "npclust.nn.Parameter with ndarray .data and .grad"
            )
        if data.dtype.kind != "f" or grad.dtype != data.dtype or grad.shape != data.shape:
            raise TypeError(
                f"parameter {index} needs floating .data and a .grad of the same shape and dtype, "
                f"got data {data.dtype}{list(data.shape)} and grad {grad.dtype}{list(grad.shape)}"
            )
        if id(parameter) in seen:
            raise ValueError(f"parameter {index} appears more than once in the parameter list")
        seen.add(id(parameter))
    return params


def _grad_array(parameter):
    """``parameter.grad`` without filling a pending lazy zero (see npclust.nn.Parameter)."""
    grad = getattr(parameter, "_grad", None)
    return grad if isinstance(grad, np.ndarray) else parameter.grad


def _tiling_view(arrays):
    """The 1-D view of one buffer that ``arrays`` tile end to end, in order; else None.

    True when all arrays are C-contiguous views of the same 1-D C-contiguous base
    array, with the same dtype, each starting at the byte where the previous ends.
    """
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    base_address = base.__array_interface__["data"][0]
    first_address = arrays[0].__array_interface__["data"][0]
    next_address = first_address
    for array in arrays:
        if (
            array.base is not base
            or array.dtype != base.dtype
            or not array.flags.c_contiguous
            or array.__array_interface__["data"][0] != next_address
        ):
            return None
        next_address += array.nbytes
    start, misalignment = divmod(first_address - base_address, base.itemsize)
    if misalignment:
        return None
    return base[start:start + (next_address - first_address) // base.itemsize]


class Optimizer:
    """Base class: parameter layout, ``step`` loop, ``zero_grad`` and state dicts.

    Subclasses define ``_validate(hyperparameters)``, ``_update(index, data, grad)``
    (one update of one array of the layout, in place) and ``_state_names``.

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
        Per-parameter optimizer state (e.g. ``"exp_avg"``), in the optimizer's
        internal layout: one array per parameter, or one flat array for all of them.
        Entries appear on the first step that needs them, as in PyTorch. Use
        :meth:`state_dict` for a per-parameter copy.

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
        """Choose the flat or per-parameter layout for the parameters' current arrays."""
        data_arrays = [parameter.data for parameter in self.params]
        grad_arrays = [parameter.grad for parameter in self.params]
        flat_data, flat_grad = _tiling_view(data_arrays), _tiling_view(grad_arrays)
        self._flat = flat_data is not None and flat_grad is not None
        if self._flat:
            self._data, self._grads = [flat_data], [flat_grad]
        else:
            self._data, self._grads = data_arrays, grad_arrays
        # Identities of the arrays the layout was built from, to notice rebinding.
        self._bound_arrays = [(parameter.data, _grad_array(parameter)) for parameter in self.params]
        self._scratch = {}

    def _ensure_layout(self):
        """Rebuild the layout, carrying the state over, if any parameter was rebound.

        ``Module.flatten_parameters()`` and ``Module.to()`` replace ``.data`` and
        ``.grad`` with new arrays; updating the old ones would silently do nothing.
        """
        for parameter, (data, grad) in zip(self.params, self._bound_arrays):
            if parameter.data is not data or _grad_array(parameter) is not grad:
                state = self.state_dict()
                self._arrange()
                self.load_state_dict(state)
                return

    def _check_trainable(self):
        for index, parameter in enumerate(self.params):
            if not getattr(parameter, "requires_grad", True):
                raise RuntimeError(
                    f"parameter {index} has requires_grad=False; build the optimizer from the "
                    "trainable parameters only, or call requires_grad_(True) before step()"
                )

    @property
    def uses_flat_buffer(self):
        """Whether steps run on one flat view of all parameters (see module docstring)."""
        return self._flat

    def _parameter_views(self, arrays):
        """Split a list of layout arrays into one view per parameter, shaped like it."""
        if not self._flat:
            return list(arrays)
        views, offset = [], 0
        for parameter in self.params:
            size = parameter.data.size
            views.append(arrays[0][offset:offset + size].reshape(parameter.data.shape))
            offset += size
        return views

    def _scratch_buffer(self, name, index):
        """A reusable array shaped like layout array ``index``, allocated on first use."""
        buffers = self._scratch.get(name)
        if buffers is None:
            buffers = self._scratch[name] = [np.empty_like(data) for data in self._data]
        return buffers[index]

    def _zeros_state(self, name):
        """State ``name`` as zeros in the current layout, created on first use."""
        arrays = self.state.get(name)
        if arrays is None:
            arrays = self.state[name] = [np.zeros_like(data) for data in self._data]
        return arrays

    # ------------------------------------------------------------------- stepping
    def step(self):
        """Update every parameter in place from its ``.grad`` (one optimization step)."""
        self._check_trainable()
        self._ensure_layout()
        for parameter in self.params:
            if getattr(parameter, "_grad_is_zero", False):
                parameter.grad  # noqa: B018 (a gradient zeroed lazily and never computed: write the zeros)
        self.step_count += 1
        for index in range(len(self._data)):
            self._update(index, self._data[index], self._grads[index])

    def _update(self, index, data, grad):
        raise NotImplementedError

    def zero_grad(self):
        """Set every parameter's ``.grad`` to zero, in place (views stay views).

        npclust Parameters are zeroed lazily (see :class:`npclust.nn.Parameter`): the
        next backward writes its gradient instead of adding it to a filled zero.
        """
        self._ensure_layout()
        for parameter in self.params:
            if hasattr(parameter, "_grad_is_zero"):
                parameter.zero_grad()
            else:
                parameter.grad.fill(0)

    def _decayed_gradient(self, index, data, grad):
        """``grad + weight_decay * data`` (L2 penalty), leaving ``.grad`` untouched."""
        decayed = self._scratch_buffer("decayed_gradient", index)
        np.multiply(data, self.weight_decay, out=decayed)
        decayed += grad
        return decayed

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
            arrays = self._zeros_state(name)
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

    def _update(self, index, data, grad):
        if self.weight_decay != 0:
            grad = self._decayed_gradient(index, data, grad)
        update = self._scratch_buffer("update", index)
        if self.momentum != 0:
            direction = self._momentum_direction(index, grad, update)
        else:
            direction = grad
        np.multiply(direction, self.lr, out=update)
        data -= update

    def _momentum_direction(self, index, grad, scratch):
        """Advance the momentum buffer with ``grad``; return the step direction.

        ``scratch`` is free for temporaries and may hold the returned direction.
        """
        buffers = self.state.get("momentum_buffer")
        if buffers is None:
            buffers = self.state["momentum_buffer"] = [None] * len(self._data)
        buffer = buffers[index]
        if buffer is None:
            # First momentum step: PyTorch starts the buffer at the gradient, not at 0.
            buffer = buffers[index] = grad.copy()
        else:
            buffer *= self.momentum
            np.multiply(grad, 1.0 - self.dampening, out=scratch)
            buffer += scratch
        if not self.nesterov:
            return buffer
        np.multiply(buffer, self.momentum, out=scratch)
        scratch += grad
        return scratch


class Adam(Optimizer):
    """Adam with bias correction and L2 weight decay (PyTorch's ``torch.optim.Adam``).

    With ``g`` the gradient, ``p`` the parameter and ``t`` the step number
    (starting at 1), one step is::

        g = g + weight_decay * p                      # if weight_decay != 0
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        p = p - lr / (1 - beta1**t) * m / denom

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

    def _update(self, index, data, grad):
        if self.weight_decay != 0:
            if self._decoupled_weight_decay:
                data *= 1.0 - self.lr * self.weight_decay
            else:
                grad = self._decayed_gradient(index, data, grad)
        arrays = (data, grad, self._zeros_state("exp_avg")[index],
                  self._zeros_state("exp_avg_sq")[index], self._scratch_buffer("update", index))
        bias_correction1 = 1.0 - self.betas[0] ** self.step_count
        bias_correction2 = 1.0 - self.betas[1] ** self.step_count
        step_size = self.lr / bias_correction1
        # p -= step_size m / (sqrt(v) / sqrt(bc2) + eps). Moving the step size into the
        # denominator saves a whole-buffer pass (same value up to rounding) unless the
        # scaled constants would overflow the dtype (an absurdly small step).
        denom_scale = 1.0 / (step_size * math.sqrt(bias_correction2)) if step_size else math.inf
        folded = max(denom_scale, self.eps / step_size if step_size else math.inf) \
            < float(np.finfo(data.dtype).max)
        constants = (step_size, bias_correction2, denom_scale, folded)
        # Every operation is elementwise, so the buffer is updated block by block: the
        # dozen passes over a block run while it sits in cache (a whole flat buffer of
        # parameters, gradients and moments does not fit), with bit-identical results.
        block = _block_length(arrays)
        if block is None or data.size <= block:
            self._update_block(*arrays, *constants)
            return
        flat = [array.reshape(-1) for array in arrays]

        def update(start):
            self._update_block(*(array[start:start + block] for array in flat), *constants)

        starts = list(range(0, data.size, block))
        if _num_threads > 1 and data.size >= _THREADED_MIN_SIZE:
            _run_split(update, starts)
        else:
            for start in starts:
                update(start)

    def _update_block(self, data, grad, exp_avg, exp_avg_sq, scratch, step_size,
                      bias_correction2, denom_scale, folded):
        beta1, beta2 = self.betas
        # m += (1 - beta1) (g - m), PyTorch's lerp form of beta1 m + (1 - beta1) g.
        np.subtract(grad, exp_avg, out=scratch)
        scratch *= 1.0 - beta1
        exp_avg += scratch

        exp_avg_sq *= beta2
        np.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - beta2
        exp_avg_sq += scratch

        if step_size == 0.0:
            return
        denom = np.sqrt(exp_avg_sq, out=scratch)
        if folded:
            denom *= denom_scale
            denom += self.eps / step_size
            data -= np.divide(exp_avg, denom, out=scratch)
        else:
            denom /= math.sqrt(bias_correction2)
            denom += self.eps
            np.divide(exp_avg, denom, out=scratch)
            scratch *= step_size
            data -= scratch


# Below this many elements a threaded update costs more in hand-offs than it saves.
_THREADED_MIN_SIZE = 1 << 20


def _block_length(arrays, block_bytes=1 << 18):
    """Elements per cache block (256 KiB per array), or None when one of ``arrays``
    cannot be cut into 1-D views without copying (the update must write through)."""
    if not all(array.flags.c_contiguous for array in arrays):
        return None
    return max(1, block_bytes // arrays[0].itemsize)


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
