"""Model files: atomic saves, a loader that refuses anything but an npclust model, exact round trips.

Also determinism: a fixed ``random_state`` gives identical labels in separate processes.
"""

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from raw_archive import header_of, members_of

import npclust
from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering, load
from npclust.datasets import make_blobs
from npclust.files.archive import FORMAT_VERSION, ArchiveError, atomic_write, read_archive
from npclust.validation import NotFittedError

# Small settings that train in a fraction of a second and still separate the blobs.
SETTINGS = {
    "imsat": (IMSAT, dict(hidden_dims=(16,), epochs=4, batch_size=40, n_neighbors=5)),
    "dec": (DEC, dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=4, pretrain_batch_size=32,
                      max_iter=20, update_interval=10, batch_size=48, kmeans_n_init=2)),
    "idec": (IDEC, dict(hidden_dims=(16,), latent_dim=2, pretrain_epochs=4,
                        pretrain_batch_size=32, max_iter=20, update_interval=10, batch_size=48,
                        kmeans_n_init=2)),
    "kmeans": (KMeans, dict(n_init=2)),
    "spectral": (SpectralClustering, dict(n_neighbors=5, n_init=2)),
}


def make(name, **overrides):
    cls, settings = SETTINGS[name]
    return cls(**{"n_clusters": 3, "random_state": 0, **settings, **overrides})


@pytest.fixture(scope="module")
def data():
    X, _ = make_blobs(n_samples=120, n_features=4, centers=3, cluster_std=0.5, random_state=3)
    return ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted(data):
    return {name: make(name).fit(data) for name in SETTINGS}


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    paths = {}
    for name, model in fitted.items():
        paths[name] = directory / f"{name}.npz"
        model.save(paths[name])
    return paths




def _write_archive(path, members):
    with open(path, "wb") as file:
        np.savez(file, **members)
    return path


def _with_header(source, target, **changes):
    """Copy the model at ``source`` to ``target`` with header entries changed."""
    members = members_of(source)
    header = json.loads(str(members["__npclust__"]))
    header.update(changes)
    members["__npclust__"] = np.array(json.dumps(header))
    return _write_archive(target, members)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", SETTINGS)
def test_round_trip_predicts_identically(fitted, saved, data, name):
    model, loaded = fitted[name], load(saved[name])
    assert type(loaded) is type(model)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
    np.testing.assert_array_equal(loaded.transform(data), model.transform(data))
    assert loaded.n_features_in_ == model.n_features_in_ and loaded.n_iter_ == model.n_iter_
    assert loaded.history_ == model.history_


def test_round_trip_float64_and_top_level_load(data, tmp_path):
    model = make("imsat", dtype="float64").fit(data)
    model.save(tmp_path / "model.npz")
    loaded = npclust.load(tmp_path / "model.npz")
    assert loaded.predict_proba(data).dtype == np.float64
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))


def test_saved_file_is_an_npz_without_pickles(saved):
    path = saved["imsat"]
    # Every member is a plain .npy array: loading with allow_pickle=False reads all.
    members = members_of(path)
    assert all(value.dtype.kind != "O" for value in members.values())
    header = header_of(path)
    assert header["format_version"] == FORMAT_VERSION and header["class"] == "IMSAT"
    assert "module/network_/0.weight" in members and "array/labels_" in members


def test_save_uses_the_name_as_given(fitted, tmp_path):
    fitted["kmeans"].save(tmp_path / "model.bin")
    assert (tmp_path / "model.bin").is_file() and not (tmp_path / "model.bin.npz").exists()


@pytest.mark.parametrize("name", SETTINGS)
def test_save_before_fit_raises_not_fitted(name, tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        make(name).save(tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()


def test_save_refuses_a_parameter_json_cannot_hold(fitted, tmp_path):
    # Not validated by fit, cannot be saved. (Set before the fit: a model file holds
    # the parameters of the last fit, so one set after it is not saved at all.)
    model = make("kmeans", verbose=object()).fit(np.eye(4))
    with pytest.raises(TypeError, match="verbose"):
        model.save(tmp_path / "model.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_missing_directory_names_the_path(fitted, tmp_path):
    target = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError, match="missing"):
        fitted["kmeans"].save(target)


# ---------------------------------------------------------------- atomic writes
def test_crash_mid_write_leaves_previous_file_and_no_temporary(fitted, tmp_path, monkeypatch):
    target = tmp_path / "model.npz"
    fitted["kmeans"].save(target)
    before = target.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # as if the process were killed mid-write

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        fitted["imsat"].save(target)
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["model.npz"]
    monkeypatch.undo()
    assert type(load(target)) is KMeans


def test_crash_before_rename_leaves_previous_file(fitted, tmp_path, monkeypatch):
    target = tmp_path / "model.npz"
    fitted["kmeans"].save(target)
    before = target.read_bytes()

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        fitted["dec"].save(target)
    assert target.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["model.npz"]


def test_atomic_write_replaces_and_creates(tmp_path):
    target = tmp_path / "labels.csv"
    atomic_write(target, lambda file: file.write(b"first"))
    atomic_write(target, lambda file: file.write(b"second"))
    assert target.read_bytes() == b"second"
    assert [path.name for path in tmp_path.iterdir()] == ["labels.csv"]


# ------------------------------------------------------------- refused content
class _Marker:
    """Unpickling this would create a file: proof that something was executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_load_refuses_pickled_content_and_executes_nothing(saved, tmp_path):
    marker = tmp_path / "executed"
    members = members_of(saved["kmeans"])
    members["array/labels_"] = np.array([_Marker(str(marker))], dtype=object)
    path = _write_archive(tmp_path / "evil.npz", members)
    with pytest.raises(ValueError, match="pickled"):
        load(path)
    assert not marker.exists()


def test_load_refuses_a_plain_pickle_file(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(ValueError, match="not an npclust model file"):
        load(path)
    assert not marker.exists()


def test_load_refuses_a_pickled_header(saved, tmp_path):
    members = members_of(saved["kmeans"])
    members["__npclust__"] = np.array([{"format_version": 1}], dtype=object)
    with pytest.raises(ValueError, match="pickled"):
        load(_write_archive(tmp_path / "model.npz", members))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_load_refuses_a_truncated_file(saved, tmp_path, keep):
    data = saved["imsat"].read_bytes()
    path = tmp_path / "model.npz"
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match="not an npclust model file|truncated or corrupted"):
        load(path)


def test_load_refuses_corrupted_weights(saved, tmp_path):
    data = bytearray(saved["imsat"].read_bytes())
    # Flip bytes inside the stored weights: the zip CRC no longer matches.
    with zipfile.ZipFile(saved["imsat"]) as archive:
        info = archive.getinfo("module/network_/0.weight.npy")
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start:start + 8] = bytes(255 - b for b in data[start:start + 8])
    path = tmp_path / "model.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"truncated or corrupted \(BadZipFile: Bad CRC-32 for "
                                         r"file 'module/network_/0\.weight\.npy'\)"):
        load(path)


@pytest.mark.parametrize("header, message", [
    (np.array("{not json"), "corrupted header"),
    (np.array("[1, 2]"), "corrupted header"),
    (np.array(json.dumps({"class": "KMeans"})), "corrupted header"),
    (np.array(7), "corrupted header"),
    (np.array(["{}", "{}"]), "corrupted header"),
])
def test_load_refuses_a_corrupted_header(saved, tmp_path, header, message):
    members = members_of(saved["kmeans"])
    members["__npclust__"] = header
    with pytest.raises(ValueError, match=message):
        load(_write_archive(tmp_path / "model.npz", members))


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, 99, "1", 1.5, True, None])
def test_load_refuses_an_unknown_format_version(saved, tmp_path, version):
    path = _with_header(saved["kmeans"], tmp_path / "model.npz", format_version=version)
    with pytest.raises(ValueError, match="format version|format_version"):
        load(path)


def test_unknown_version_message_names_both_versions(saved, tmp_path):
    newer = FORMAT_VERSION + 1
    path = _with_header(saved["kmeans"], tmp_path / "model.npz", format_version=newer)
    with pytest.raises(ValueError, match=f"version {newer}.*format {FORMAT_VERSION}"):
        load(path)


@pytest.mark.parametrize("class_name", ["Pipeline", "os.system", "ClusteringEstimator", "",
                                        ["KMeans"], None, "kmeans"])
def test_load_refuses_a_wrong_class_name(saved, tmp_path, class_name):
    path = _with_header(saved["kmeans"], tmp_path / "model.npz", **{"class": class_name})
    with pytest.raises(ValueError, match="unknown estimator class.*known classes"):
        load(path)


def test_load_refuses_a_class_whose_weights_do_not_match(saved, tmp_path):
    # An IMSAT file relabelled as DEC: DEC's encoder weights are missing.
    path = _with_header(saved["imsat"], tmp_path / "model.npz", **{"class": "DEC"})
    with pytest.raises(ValueError, match="unknown parameter|weights do not fit|unexpected"):
        load(path)


def test_load_refuses_an_unknown_parameter(saved, tmp_path):
    header = header_of(saved["kmeans"])
    params = {**header["params"], "__class__": "os.system"}
    path = _with_header(saved["kmeans"], tmp_path / "model.npz", params=params)
    with pytest.raises(ValueError, match="unknown parameter.*__class__"):
        load(path)


def test_load_refuses_unknown_fitted_attributes(saved, tmp_path):
    # A scalar named like a method would shadow it on the instance.
    header = header_of(saved["kmeans"])
    scalars = {**header["scalars"], "predict": 1}
    path = _with_header(saved["kmeans"], tmp_path / "model.npz", scalars=scalars)
    with pytest.raises(ValueError, match="unknown fitted attribute.*predict"):
        load(path)


@pytest.mark.parametrize("n_features", [0, -1, "4", None, 2.5])
def test_load_refuses_a_bad_feature_count(saved, tmp_path, n_features):
    header = header_of(saved["kmeans"])
    scalars = {**header["scalars"], "n_features_in_": n_features}
    path = _with_header(saved["kmeans"], tmp_path / "model.npz", scalars=scalars)
    with pytest.raises(ValueError, match="n_features_in_"):
        load(path)


def test_load_refuses_a_feature_count_that_does_not_fit_the_weights(saved, tmp_path):
    header = header_of(saved["imsat"])
    scalars = {**header["scalars"], "n_features_in_": 5}
    path = _with_header(saved["imsat"], tmp_path / "model.npz", scalars=scalars)
    with pytest.raises(ValueError, match="weights do not fit IMSAT.*shape"):
        load(path)


@pytest.mark.parametrize("name, key", [
    ("imsat", "module/network_/0.weight"),
    ("imsat", "module/network_/1.running_var"),
    ("dec", "module/decoder_/2.bias"),
    ("dec", "array/cluster_centers_"),
    ("kmeans", "array/cluster_centers_"),
    ("kmeans", "array/labels_"),
    ("spectral", "array/X_fit_"),
    ("spectral", "array/embedding_"),
])
def test_load_refuses_a_missing_weight(saved, tmp_path, name, key):
    members = members_of(saved[name])
    del members[key]
    with pytest.raises(ValueError, match="weights do not fit|do not fit|labels_"):
        load(_write_archive(tmp_path / "model.npz", members))


@pytest.mark.parametrize("key", ["module/network_/9.weight", "module/other_/0.weight",
                                 "array/secret_", "payload"])
def test_load_refuses_an_extra_weight(saved, tmp_path, key):
    members = members_of(saved["imsat"])
    members[key] = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match="unexpected"):
        load(_write_archive(tmp_path / "model.npz", members))


def test_load_refuses_a_member_that_is_not_an_array(saved, tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(saved["kmeans"].read_bytes())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("run_me.py", "print('hello')")
    with pytest.raises(ValueError, match="not arrays.*run_me.py"):
        load(path)


@pytest.mark.parametrize("name, key, value", [
    ("imsat", "module/network_/0.weight", np.nan),
    ("kmeans", "array/cluster_centers_", np.inf),
])
def test_load_refuses_non_finite_weights(saved, tmp_path, name, key, value):
    members = members_of(saved[name])
    members[key] = members[key].copy()
    members[key].flat[0] = value
    with pytest.raises(ValueError, match="NaN or infinity"):
        load(_write_archive(tmp_path / "model.npz", members))


@pytest.mark.parametrize("value", [np.array(["a", "b"]), np.ones((3, 4), dtype=complex)])
def test_load_refuses_non_numeric_weights(saved, tmp_path, value):
    members = members_of(saved["kmeans"])
    members["array/cluster_centers_"] = value
    with pytest.raises(ValueError, match="dtype"):
        load(_write_archive(tmp_path / "model.npz", members))


def test_load_refuses_float_labels(saved, tmp_path):
    members = members_of(saved["kmeans"])
    members["array/labels_"] = members["array/labels_"].astype(np.float64)
    with pytest.raises(ValueError, match="labels_"):
        load(_write_archive(tmp_path / "model.npz", members))


def test_load_refuses_centers_of_the_wrong_shape(saved, tmp_path):
    members = members_of(saved["kmeans"])
    members["array/cluster_centers_"] = np.zeros((3, 7))
    with pytest.raises(ValueError, match="do not fit KMeans"):
        load(_write_archive(tmp_path / "model.npz", members))


def test_load_refuses_an_npz_that_is_not_a_model(tmp_path):
    path = _write_archive(tmp_path / "data.npz", {"X": np.ones((3, 2))})
    with pytest.raises(ValueError, match="not an npclust model.*no header"):
        load(path)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x93NUMPY", b"PK"])
def test_load_refuses_files_that_are_not_archives(tmp_path, content):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not an npclust model file|truncated or corrupted"):
        load(path)


def test_load_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="not a regular file"):
        load(tmp_path)


# ------------------------------------------------------------------ determinism
_DETERMINISM_SCRIPT = """
import hashlib
import numpy as np
from npclust.cluster import DEC, IDEC, IMSAT, KMeans, SpectralClustering
from npclust.datasets import make_blobs
X, _ = make_blobs(n_samples=120, n_features=4, centers=3, cluster_std=0.5, random_state=3)
X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
for name, (cls, settings) in {settings}.items():
    model = cls(n_clusters=3, random_state=11, **settings).fit(X)
    digest = hashlib.sha256(model.labels_.tobytes() + model.transform(X).tobytes()).hexdigest()
    print(name, digest)
"""


def _fingerprints_in_subprocess():
    settings = "{" + ", ".join(f"{name!r}: ({cls.__name__}, {kwargs!r})"
                               for name, (cls, kwargs) in SETTINGS.items()) + "}"
    script = _DETERMINISM_SCRIPT.format(settings=settings)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    return dict(line.split() for line in result.stdout.splitlines())


def test_same_random_state_gives_identical_fits_in_separate_processes(data):
    import hashlib

    first, second = _fingerprints_in_subprocess(), _fingerprints_in_subprocess()
    assert set(first) == set(SETTINGS)
    assert first == second
    # And the same as in this process.
    for name in SETTINGS:
        model = make(name, random_state=11).fit(data)
        digest = hashlib.sha256(model.labels_.tobytes() + model.transform(data).tobytes())
        assert digest.hexdigest() == first[name], name


class _Frame:
    """Just enough of a DataFrame: string column names and ``__array__``."""

    def __init__(self, data, columns):
        self.data, self.columns = np.asarray(data), list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)


def test_round_trip_keeps_feature_names(data, tmp_path):
    frame = _Frame(data, ["a", "b", "c", "d"])
    model = make("kmeans").fit(frame)
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]
    model.save(tmp_path / "model.npz")
    loaded = load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.feature_names_in_, model.feature_names_in_)
    np.testing.assert_array_equal(loaded.predict(frame), model.labels_)
    with pytest.raises(ValueError, match="different feature names"):
        loaded.predict(_Frame(data, ["a", "b", "c", "e"]))


def test_load_refuses_feature_names_of_the_wrong_length(data, tmp_path):
    make("kmeans").fit(_Frame(data, list("abcd"))).save(tmp_path / "model.npz")
    path = _with_header(tmp_path / "model.npz", tmp_path / "bad.npz", feature_names_in=["a"])
    with pytest.raises(ValueError, match="feature names"):
        load(path)


def test_load_refuses_a_zip_entry_claiming_an_unsupported_zip_version(saved, tmp_path):
    # Found by hypothesis: a damaged "version needed" field makes zipfile raise
    # NotImplementedError, which must surface as the usual ValueError.
    data = bytearray(saved["imsat"].read_bytes())
    data[4:6] = (64).to_bytes(2, "little")  # first local header: needs zip version 6.4
    central = data.find(b"PK\x01\x02")
    data[central + 6:central + 8] = (64).to_bytes(2, "little")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        load(damaged)


# Files written by npclust 0.1 (format version 1), committed as they came out of it.
FORMAT1 = Path(__file__).parent / "data" / "format1"


@pytest.mark.parametrize("name", ["kmeans", "imsat", "idec"])
def test_format1_model_files_load_and_predict_as_they_did(name):
    X = np.load(FORMAT1 / "X.npy")
    expected = json.loads((FORMAT1 / "expected.json").read_text())[name]
    model = load(FORMAT1 / f"{name}.npz")
    # Equal up to float32 rounding: another BLAS kernel (AMD's, say) adds the products of
    # the same weights in another order, off by up to 2.4e-7 relative here.
    np.testing.assert_allclose(model.predict_proba(X), np.array(expected["proba"], dtype=np.float32),
                               rtol=2e-6, atol=0)
    np.testing.assert_array_equal(model.predict(X), expected["labels"])


def test_format1_port_reference_is_refused_naming_its_version(tmp_path):
    # None was kept: its header member is what tells one apart. There is no fit to
    # delete it for, unlike a checkpoint.
    path = tmp_path / "reference.npz"
    np.savez(path, __reference__=np.array("{}"))
    with pytest.raises(ValueError) as error:
        load(path)
    assert str(error.value) == (f"{str(path)!r} is a port reference file of format version 1 "
                                f"(npclust 0.1), which this npclust (format {FORMAT_VERSION}) "
                                "does not read")


def test_what_the_check_of_read_archive_refuses_names_the_file(saved):
    def check(header, shapes):
        raise ValueError("no such class")

    with pytest.raises(ArchiveError) as error:
        read_archive(saved["kmeans"], "model", check=check)
    assert str(error.value) == f"{str(saved['kmeans'])!r}: no such class"


def test_format1_checkpoint_is_refused_naming_its_version(tmp_path):
    from npclust.cluster import IMSAT

    X = np.load(FORMAT1 / "X.npy")
    path = tmp_path / "checkpoint.npz"
    path.write_bytes((FORMAT1 / "imsat_checkpoint.npz").read_bytes())
    model = IMSAT(n_clusters=3, hidden_dims=(8,), epochs=1, n_init=1, n_neighbors=3,
                  batch_size=20, random_state=0, checkpoint=path)
    with pytest.raises(ValueError, match="checkpoint file of format version 1.*delete it"):
        model.fit(X)
