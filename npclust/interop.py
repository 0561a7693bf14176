"""Convert npclust modules to ``torch.nn`` modules and back, with identical weights.

:func:`to_torch` builds the ``torch.nn`` module that computes what an npclust module
computes: same layer types and hyper-parameters, same parameters, buffers and
state-dict keys, same training/evaluation mode layer by layer, same
``requires_grad`` flags. :func:`from_torch` does the reverse for every ``torch.nn``
layer that has an npclust counterpart and raises a ``TypeError`` naming any other.
``from_torch(to_torch(m))`` reproduces ``m`` bit for bit.

PyTorch is optional: it is imported inside the functions, so this module imports
without it, and calling a function without it raises an ``ImportError`` saying to
install ``npclust[torch]``.

What does not carry over: the random generator of a ``Dropout`` layer (masks are
drawn by each library's own generator), and the ``inplace`` flag of PyTorch's
``Dropout``, ``LeakyReLU`` and ``ELU``, which npclust does not have; ``inplace``
only saves memory, the results are the same.
"""

import numpy as np

from . import nn

__all__ = ["to_torch", "from_torch"]


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "npclust.interop needs PyTorch, which is not installed; "
            "install npclust[torch] (pip install 'npclust[torch]')"
        ) from error
    return torch


# ---------------------------------------------------------------------- dtypes
# Floating dtypes both libraries hold; anything else (bfloat16, complex) has no
# counterpart on the other side.
_SHARED_FLOAT_DTYPES = ("float16", "float32", "float64")


def _torch_dtype(torch, dtype):
    """The torch floating dtype for a numpy dtype-like or a ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        name = str(dtype).replace("torch.", "")
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            raise TypeError(
                f"dtype must be a numpy or torch floating dtype, got {dtype!r}"
            ) from None
    if name not in _SHARED_FLOAT_DTYPES:
        raise TypeError(f"dtype must be one of {list(_SHARED_FLOAT_DTYPES)}, got {dtype!r}")
    return getattr(torch, name)


def _numpy_dtype(tensor, what):
    """The numpy dtype of ``tensor``; TypeError for a floating dtype numpy lacks (bfloat16)."""
    name = str(tensor.dtype).replace("torch.", "")
    if tensor.is_floating_point() and name not in _SHARED_FLOAT_DTYPES:
        raise TypeError(
            f"{what} has dtype {tensor.dtype}, which numpy cannot hold; convert the torch "
            "module to float32 or float64 first (module.float() or module.double())"
        )
    return np.dtype(name)


def _to_numpy(tensor, what):
    """A numpy copy of ``tensor`` (detached, moved to the CPU)."""
    _numpy_dtype(tensor, what)
    return tensor.detach().cpu().numpy().copy()


def _copy_into_tensor(torch, tensor, array):
    """Overwrite ``tensor`` with a copy of ``array``, outside autograd."""
    with torch.no_grad():
        # torch.tensor copies, so read-only arrays and views are fine.
        tensor.copy_(torch.tensor(np.asarray(array)))


# ------------------------------------------------------------------- npclust -> torch
# One builder per npclust layer: it returns the torch layer with the same
# hyper-parameters; parameters, buffers and modes are copied afterwards for all
# layers alike by _copy_state_to_torch.


def _linear_to_torch(torch, module, dtype):
    return torch.nn.Linear(
        module.in_features, module.out_features, bias=module.bias is not None,
        dtype=_torch_dtype(torch, module.weight.dtype if dtype is None else dtype),
    )


def _batchnorm_to_torch(torch, module, dtype):
    # npclust keeps the running statistics whatever track_running_stats says, and the
    # flag only stops their update in training mode; evaluation mode always uses them.
    # torch.nn.BatchNorm1d(track_running_stats=False) would have no buffers and use
    # batch statistics in evaluation mode too. Building the layer with buffers and
    # then clearing the flag gives npclust's behaviour: torch's forward reads the
    # flag at every call (the same switch VAT implementations use in PyTorch).
    layer = torch.nn.BatchNorm1d(
        module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine,
        track_running_stats=True,
        dtype=_torch_dtype(torch, module.running_mean.dtype if dtype is None else dtype),
    )
    layer.track_running_stats = bool(module.track_running_stats)
    return layer


def _sequential_to_torch(torch, module, dtype):
    return torch.nn.Sequential(*(_module_to_torch(torch, child, dtype) for child in module))


_TO_TORCH = {
    nn.Linear: _linear_to_torch,
    nn.ReLU: lambda torch, m, dtype: torch.nn.ReLU(inplace=m.inplace),
    nn.LeakyReLU: lambda torch, m, dtype: torch.nn.LeakyReLU(m.negative_slope),
    nn.ELU: lambda torch, m, dtype: torch.nn.ELU(m.alpha),
    nn.Sigmoid: lambda torch, m, dtype: torch.nn.Sigmoid(),
    nn.Tanh: lambda torch, m, dtype: torch.nn.Tanh(),
    nn.Softplus: lambda torch, m, dtype: torch.nn.Softplus(beta=m.beta, threshold=m.threshold),
    nn.Identity: lambda torch, m, dtype: torch.nn.Identity(),
    nn.Softmax: lambda torch, m, dtype: torch.nn.Softmax(dim=m.dim),
    nn.LogSoftmax: lambda torch, m, dtype: torch.nn.LogSoftmax(dim=m.dim),
    nn.BatchNorm1d: _batchnorm_to_torch,
    nn.Dropout: lambda torch, m, dtype: torch.nn.Dropout(m.p),
    nn.Sequential: _sequential_to_torch,
}


def _module_to_torch(torch, module, dtype):
    # Exact type, not isinstance: a subclass may compute something else.
    builder = _TO_TORCH.get(type(module))
    if builder is None:
        raise TypeError(
            f"cannot convert {type(module).__name__} to torch: supported npclust modules are "
            f"{sorted(cls.__name__ for cls in _TO_TORCH)}"
        )
    layer = builder(torch, module, dtype)
    _copy_state_to_torch(torch, module, layer)
    return layer


def _copy_state_to_torch(torch, module, layer):
    """Copy ``module``'s own parameters, buffers and mode into the torch ``layer``.

    Children were copied when they were built; ``recurse=False`` leaves them alone.
    """
    torch_parameters = dict(layer.named_parameters(recurse=False))
    for name, value in vars(module).items():
        if isinstance(value, nn.Parameter):
            _copy_into_tensor(torch, torch_parameters[name], value.data)
            torch_parameters[name].requires_grad_(value.requires_grad)
    torch_buffers = dict(layer.named_buffers(recurse=False))
    for name in module._buffer_names:
        _copy_into_tensor(torch, torch_buffers[name], getattr(module, name))
    layer.training = module.training


def to_torch(module, dtype=None):
    """Build the ``torch.nn`` module equivalent to an npclust module.

    Parameters
    ----------
    module : npclust.nn.Module
        Any layer of :mod:`npclust.nn`, or a (nested) ``Sequential`` of them.
    dtype : None, numpy dtype-like or torch.dtype, default=None
        Floating dtype of the torch parameters and running statistics. None keeps
        each layer's own dtype (float32 stays ``torch.float32``); another dtype
        casts, which is exact only when widening.

    Returns
    -------
    torch.nn.Module
        On the CPU, with the same layer types and hyper-parameters, parameter values,
        buffers (``running_mean``, ``running_var``, ``num_batches_tracked``), state-dict
        keys, ``requires_grad`` flags and training/evaluation mode, layer by layer.
        The tensors own their memory: changing one side leaves the other alone.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    TypeError
        If ``module`` (or a layer inside it) has no ``torch.nn`` counterpart.

    Notes
    -----
    ``BatchNorm1d(track_running_stats=False)`` becomes a torch ``BatchNorm1d`` built
    with running statistics whose ``track_running_stats`` attribute is then set to
    False. That is npclust's meaning of the flag: batch statistics without updating
    the running ones in training mode, running statistics in evaluation mode. (A
    torch layer *constructed* with ``track_running_stats=False`` has no running
    statistics and normalises with the batch statistics in evaluation mode too.)

    Examples
    --------
    >>> from npclust import nn
    >>> from npclust.interop import to_torch
    >>> net = nn.Sequential(nn.Linear(4, 3, rng=0), nn.BatchNorm1d(3), nn.ReLU())
    >>> to_torch(net)  # doctest: +SKIP
    Sequential(
      (0): Linear(in_features=4, out_features=3, bias=True)
      (1): BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
      (2): ReLU()
    )
    """
    torch = _import_torch()
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_torch expects an npclust.nn.Module, got {type(module).__name__}")
    if dtype is not None:
        _torch_dtype(torch, dtype)  # reject a bad dtype before building anything
    return _module_to_torch(torch, module, dtype)


# ------------------------------------------------------------------- torch -> npclust
# One builder per torch layer, ``builder(registry, layer)``; the registry is passed
# along so Sequential can convert its children.


def _linear_from_torch(registry, layer):
    # rng=0: the initial values are overwritten, and a fixed seed spares the OS entropy.
    return nn.Linear(
        layer.in_features, layer.out_features, bias=layer.bias is not None, rng=0,
        dtype=_numpy_dtype(layer.weight, "Linear.weight"),
    )


def _batchnorm_from_torch(registry, layer):
    if layer.running_mean is None or layer.running_var is None:
        raise ValueError(
            "torch.nn.BatchNorm1d built with track_running_stats=False has no running "
            "statistics and normalises with batch statistics in evaluation mode too; "
            "npclust.nn.BatchNorm1d always keeps running statistics, so it cannot "
            "reproduce that layer in evaluation mode"
        )
    if layer.affine and layer.bias is None:
        raise ValueError(
            "torch.nn.BatchNorm1d built with bias=False learns a scale but no shift; "
            "npclust.nn.BatchNorm1d has both (affine=True) or neither (affine=False)"
        )
    return nn.BatchNorm1d(
        layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine,
        track_running_stats=layer.track_running_stats,
        dtype=_numpy_dtype(layer.running_mean, "BatchNorm1d.running_mean"),
    )


def _softmax_dim(layer):
    if layer.dim is None:
        raise ValueError(
            f"torch.nn.{type(layer).__name__}(dim=None) picks its dimension from the input's "
            "rank (deprecated in PyTorch); give it an explicit dim to convert it"
        )
    return layer.dim


def _sequential_from_torch(registry, layer):
    return nn.Sequential(*(_module_from_torch(registry, child) for child in layer))


def _from_torch_registry(torch):
    return {
        torch.nn.Linear: _linear_from_torch,
        torch.nn.ReLU: lambda registry, m: nn.ReLU(inplace=m.inplace),
        torch.nn.LeakyReLU: lambda registry, m: nn.LeakyReLU(m.negative_slope),
        torch.nn.ELU: lambda registry, m: nn.ELU(m.alpha),
        torch.nn.Sigmoid: lambda registry, m: nn.Sigmoid(),
        torch.nn.Tanh: lambda registry, m: nn.Tanh(),
        torch.nn.Softplus: lambda registry, m: nn.Softplus(beta=m.beta, threshold=m.threshold),
        torch.nn.Identity: lambda registry, m: nn.Identity(),
        torch.nn.Softmax: lambda registry, m: nn.Softmax(dim=_softmax_dim(m)),
        torch.nn.LogSoftmax: lambda registry, m: nn.LogSoftmax(dim=_softmax_dim(m)),
        torch.nn.BatchNorm1d: _batchnorm_from_torch,
        torch.nn.Dropout: lambda registry, m: nn.Dropout(m.p),
        torch.nn.Sequential: _sequential_from_torch,
    }


def _module_from_torch(registry, layer):
    # Exact type, not isinstance: a subclass of a supported layer may compute something else.
    builder = registry.get(type(layer))
    if builder is None:
        raise TypeError(
            f"cannot convert torch layer {type(layer).__module__}.{type(layer).__qualname__} "
            "to npclust: supported layers are "
            f"{sorted('torch.nn.' + cls.__name__ for cls in registry)}"
        )
    module = builder(registry, layer)
    _copy_state_from_torch(layer, module)
    return module


def _copy_state_from_torch(layer, module):
    """Copy the torch ``layer``'s own parameters, buffers and mode into ``module``."""
    layer_name = type(layer).__name__
    for name, tensor in layer.named_parameters(recurse=False):
        parameter = getattr(module, name)
        parameter.data[...] = _to_numpy(tensor, f"{layer_name}.{name}")
        parameter.requires_grad = bool(tensor.requires_grad)
    for name, tensor in layer.named_buffers(recurse=False):
        getattr(module, name)[...] = _to_numpy(tensor, f"{layer_name}.{name}")
    module.training = layer.training


def from_torch(module):
    """Build the npclust module equivalent to a ``torch.nn`` module.

    Parameters
    ----------
    module : torch.nn.Module
        ``torch.nn.Linear``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``Sigmoid``, ``Tanh``,
        ``Softplus``, ``Identity``, ``Softmax``, ``LogSoftmax`` (with an explicit
        ``dim``), ``BatchNorm1d`` (with running statistics), ``Dropout``, or a
        (nested) ``torch.nn.Sequential`` of them, in float16, float32 or float64,
        on any device.

    Returns
    -------
    npclust.nn.Module
        With copies of the parameters and buffers, in their dtype, and the same
        hyper-parameters, ``requires_grad`` flags and training/evaluation mode,
        layer by layer. Dropout layers get a fresh random generator.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    TypeError
        Naming the first layer that has no npclust counterpart (exact types only:
        a subclass of a supported layer may compute something else), or a tensor
        dtype numpy cannot hold (bfloat16).
    ValueError
        For a supported layer in a configuration npclust cannot reproduce:
        ``BatchNorm1d`` constructed with ``track_running_stats=False`` or with
        ``affine=True, bias=False``, or ``Softmax``/``LogSoftmax`` with ``dim=None``.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    return _module_from_torch(_from_torch_registry(torch), module)
