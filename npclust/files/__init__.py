"""Files npclust reads and writes.

* :mod:`~npclust.files.output`: where npclust may write and how (regular files
  replaced atomically through unpredictable temporary files, FIFOs and devices
  streamed in place, directories and sockets refused, symbolic links followed);
* :mod:`~npclust.files.archive`: the one archive format (a JSON header and named
  arrays in an ``.npz``), written by those rules and read as untrusted input, every
  declared size bounded before anything is allocated; model files, checkpoints and
  port-reference vectors are uses of it;
* :mod:`~npclust.files.checkpoint`: the training state of an unfinished fit;
* :mod:`~npclust.files.matrix`: user data matrices (``.npy``, ``.npz``, ``.csv``) and
  label files.

Nothing here imports an estimator: which class a model file names is looked up in
:data:`npclust.cluster.ESTIMATORS`.
"""
