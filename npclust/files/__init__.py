"""Files npclust reads and writes.

* :mod:`~npclust.files.archive`: the one archive format (a JSON header and named
  arrays in an ``.npz``), written atomically and read as untrusted input; model
  files, checkpoints and port-reference vectors are uses of it;
* :mod:`~npclust.files.checkpoint`: the training state of an unfinished fit;
* :mod:`~npclust.files.matrix`: user data matrices (``.npy``, ``.npz``, ``.csv``) and
  label files.

Nothing here imports an estimator: which class a model file names is looked up in
:data:`npclust.cluster.ESTIMATORS`.
"""
