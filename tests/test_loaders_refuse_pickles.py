"""Every file npclust reads is read without unpickling: a pickle inside is refused, never run."""

import io
import zipfile

import numpy as np
import pytest

from npclust.cluster import IMSAT, load
from npclust.files.archive import read_archive, write_archive
from npclust.files.matrix import DataFileError, read_matrix


class Trap:
    """Unpickling this writes a file: if the file appears, a loader ran the pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _add_member(path, name, array):
    """Append ``name.npy`` holding ``array`` (allow_pickle=True) to the zip at ``path``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"{name}.npy", buffer.getvalue())


@pytest.fixture
def trap(tmp_path):
    marker = tmp_path / "unpickled"
    yield np.array([Trap(marker)], dtype=object)
    assert not marker.exists(), "a loader unpickled the file's content"


def test_model_loader_refuses_a_pickled_member(tmp_path, trap):
    X = np.random.default_rng(0).normal(size=(30, 3))
    path = tmp_path / "model.npz"
    IMSAT(n_clusters=2, hidden_dims=(4,), epochs=1, n_init=1, n_neighbors=3,
          random_state=0).fit(X).save(path)
    _add_member(path, "array/labels_extra", trap)
    with pytest.raises(ValueError, match="pickled"):
        load(path)


@pytest.mark.parametrize("kind", ["checkpoint", "port-reference"])
def test_archive_reader_refuses_a_pickled_member(tmp_path, trap, kind):
    path = tmp_path / f"{kind}.npz"
    write_archive(path, kind, {}, {"weights": np.zeros(3)})
    _add_member(path, "weights_extra", trap)
    with pytest.raises(ValueError, match="pickled"):
        read_archive(path, kind)


def test_checkpoint_with_a_pickled_member_stops_the_fit(tmp_path, trap):
    X = np.random.default_rng(0).normal(size=(30, 3))
    path = tmp_path / "fit.npz"
    params = dict(n_clusters=2, hidden_dims=(4,), epochs=2, n_init=1, n_neighbors=3,
                  random_state=0, checkpoint=path)
    IMSAT(**params).fit(X)
    _add_member(path, "model/network/extra", trap)
    with pytest.raises(ValueError, match="pickled"):
        IMSAT(**params).fit(X)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_data_reader_refuses_pickled_data(tmp_path, trap, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".npy":
        np.save(path, trap, allow_pickle=True)
    else:
        np.savez(path, X=trap)
    with pytest.raises(DataFileError, match="pickled|Python objects"):
        read_matrix(path)


@pytest.mark.parametrize("value", [np.array([1, "a"], dtype=object), [None], {"a": 1}])
def test_archive_writer_refuses_what_would_be_pickled(tmp_path, value):
    # np.savez pickles object arrays, which read_archive refuses: such a file could not be
    # read back, so it is not written, and an existing file is left as it was.
    path = tmp_path / "model.npz"
    path.write_bytes(b"earlier")
    with pytest.raises(TypeError, match="array 'weights' has dtype object"):
        write_archive(path, "model", {}, {"bias": np.zeros(2), "weights": value})
    assert path.read_bytes() == b"earlier" and sorted(tmp_path.iterdir()) == [path]
