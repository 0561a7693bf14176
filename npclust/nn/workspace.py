"""Arrays a module reuses from one training step to the next: the one home of buffer reuse.

A training step on fixed-shape batches would otherwise allocate every hidden
activation and every input gradient afresh. Each module owns a :class:`Workspace`;
a layer asks it for storage in two ways:

* :meth:`Workspace.array` for a cache only the module reads (BatchNorm's normalised
  input), always reused, since only the latest call's cache is kept;
* :meth:`Workspace.result` for what ``forward`` or ``backward`` returns: a reused
  array only while a container has *lent* the module's results (:class:`lent`),
  which a container does for a result it consumes itself before the module's next
  call; otherwise None, and NumPy allocates a fresh array as usual.

So outputs and input gradients that reach user code are never overwritten later,
while the chain inside a :class:`~npclust.nn.Sequential` in training mode runs on
buffers. Writing into ``out=`` does not change a result, bit for bit; the tests pin
each container's chain against the modules called one by one.
"""

import numpy as np

__all__ = ["Workspace", "lent"]


class Workspace:
    """Named arrays kept between calls, reused while their shape and dtype stay the same.

    Attributes
    ----------
    results_lent : bool
        Set by a container (through :class:`lent`) while the module's results may
        live in reused arrays.
    """

    __slots__ = ("_arrays", "results_lent")

    def __init__(self):
        self._arrays = {}
        self.results_lent = False

    def array(self, name, shape, dtype):
        """The array called ``name``, of ``shape`` and ``dtype``; its contents are undefined.

        Parameters
        ----------
        name : str
        shape : tuple of int
        dtype : numpy dtype
        """
        array = self._arrays.get(name)
        # A read-only array (say, one restored from a memory map) cannot be written into.
        if (array is None or array.shape != shape or array.dtype != dtype
                or not array.flags.writeable):
            array = self._arrays[name] = np.empty(shape, dtype)
        return array

    def result(self, name, shape, dtype):
        """Storage for a returned result: :meth:`array` while results are lent, else None.

        Meant for the ``out=`` argument of a NumPy function, where None means a new array.

        Parameters
        ----------
        name : str
        shape : tuple of int
        dtype : numpy dtype
        """
        return self.array(name, shape, dtype) if self.results_lent else None

    def zero_row(self, x):
        """Zeros shaped like one row of ``x``, broadcasting against all of ``x``.

        ``np.maximum(x, zero_row)`` runs NumPy's vectorised array-array loop,
        which is several times faster than the loop against the scalar 0, and
        gives the same values.

        Parameters
        ----------
        x : ndarray of at least one dimension
        """
        zeros = self.array("zero_row", x.shape[1:], x.dtype)
        zeros.fill(0)
        return zeros

    def arrays(self):
        """The arrays currently kept, by name."""
        return dict(self._arrays)


class lent:
    """``with lent(module):`` lends ``module``'s results to the caller inside the block.

    The caller promises to be done with each result before calling the module's
    same method again; the module may then return arrays it reuses.

    Parameters
    ----------
    module : Module
    lend : bool, default=True
        False makes the block a no-op, for callers that lend conditionally.
    """

    __slots__ = ("_workspace", "_lend", "_previous")

    def __init__(self, module, lend=True):
        self._workspace, self._lend = module.workspace, lend

    def __enter__(self):
        self._previous = self._workspace.results_lent
        self._workspace.results_lent = self._lend

    def __exit__(self, *exc_info):
        self._workspace.results_lent = self._previous
