"""Files read from strangers: model files, checkpoints and data files that try to exhaust
memory, drive allocations from their header, or break the parser.

Every case must end in the usual one-line ``ValueError`` naming the file, quickly, and
having allocated no more than the file's own arrays (``tracemalloc`` measures NumPy's
allocations).
"""

import copy
import json
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from raw_archive import header_of, members_of
from small_estimators import SETTINGS

from npclust.cli import main
from npclust.cluster import IMSAT, KMeans, load
from npclust.files import archive
from npclust.files.matrix import DataFileError, read_matrix


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(center, 0.3, (40, 4)) for center in (-2, 0, 2)])
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    paths = {}
    for name, (cls, params) in SETTINGS.items():
        paths[name] = directory / f"{name}.npz"
        cls(n_clusters=3, random_state=0, **params).fit(data).save(paths[name])
    return paths




def write_members(path, members, compression=zipfile.ZIP_STORED):
    """An .npz from ``members`` (arrays, or raw ``.npy`` bytes), compressed or not."""
    with zipfile.ZipFile(path, "w", compression=compression) as zip_file:
        for name, value in members.items():
            if isinstance(value, bytes):
                zip_file.writestr(f"{name}.npy", value)
            else:
                with zip_file.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
    return path


def with_header(source, target, header):
    members = members_of(source)
    members["__npclust__"] = np.array(json.dumps(header))
    return write_members(target, members)


def npy_bytes(shape, dtype=np.float64, payload=b""):
    """An ``.npy`` header declaring ``shape`` followed by ``payload`` (not that many bytes)."""
    import io

    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + payload


def assert_one_line(error, *fragments):
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def bounded(function, limit_bytes=20 << 20, seconds=3.0):
    """Run ``function``; assert that it allocated less than ``limit_bytes`` and was quick."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        function()
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < limit_bytes, f"allocated {peak} bytes"
        assert elapsed < seconds, f"took {elapsed:.1f}s"


# --------------------------------------------------- item 5: size limits, data files
def test_data_npz_that_inflates_beyond_the_memory_limit_is_refused_unread(tmp_path, monkeypatch):
    # 64 MB of zeros compress to about 64 KB; the limit is set to 16 MB for the test.
    monkeypatch.setattr(archive, "available_memory", lambda: 32 << 20)
    path = write_members(tmp_path / "bomb.npz", {"X": np.zeros((8192, 1024))},
                         compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(DataFileError) as error:
        bounded(lambda: read_matrix(path), limit_bytes=4 << 20)
    assert_one_line(error, "bomb.npz", "declares 67108992 bytes", "more than")


def test_data_npz_member_declaring_a_huge_shape_is_refused_before_allocation(tmp_path):
    path = write_members(tmp_path / "huge.npz", {"X": npy_bytes((100000, 100000))})
    with pytest.raises(DataFileError) as error:
        bounded(lambda: read_matrix(path))
    assert_one_line(error, "huge.npz", "declares shape (100000, 100000)", "but holds")


@pytest.mark.parametrize("mmap", [True, False])
def test_data_npy_declaring_a_huge_shape_is_refused_before_allocation(tmp_path, mmap):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_bytes((100000, 100000), payload=b"\0" * 800))
    with pytest.raises(DataFileError) as error:
        bounded(lambda: read_matrix(path, mmap=mmap))
    assert_one_line(error, "huge.npy", "declares shape (100000, 100000)", "but holds 800 bytes")


def test_data_npy_larger_than_the_memory_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "available_memory", lambda: 1 << 20)
    path = tmp_path / "big.npy"
    np.save(path, np.ones((1000, 200)))  # 1.6 MB, more than half of the pretended 1 MB
    with pytest.raises(DataFileError, match="more than half the memory"):
        read_matrix(path, mmap=False)
    # Memory-mapped, it is read in place, but converting it to float32 is a copy.
    with pytest.raises(DataFileError, match="converting its"):
        read_matrix(path, mmap=True)
    assert read_matrix(path, dtype=np.float64).shape == (1000, 200)  # mapped, no copy


def test_cli_huge_declared_shape_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_bytes((100000, 100000)))
    status = main(["fit", str(path), "--n-clusters", "2", "--method", "kmeans"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "declares shape" in err


# ------------------------------------------- item 5: size limits, model files
def test_model_with_a_compressed_member_inflating_too_far_is_refused(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_INFLATED_BYTES", 1 << 20)
    members = members_of(saved["kmeans"])
    members["array/labels_"] = np.zeros(1 << 20, dtype=np.int64)  # 8 MB of zeros
    path = write_members(tmp_path / "bomb.npz", members, compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError) as error:
        bounded(lambda: load(path), limit_bytes=2 << 20)
    assert_one_line(error, "bomb.npz", "would inflate to 8388736 bytes")


def test_model_arrays_beyond_the_memory_limit_are_refused(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "available_memory", lambda: 1 << 20)
    members = members_of(saved["kmeans"])
    members["array/labels_"] = np.zeros(1 << 17, dtype=np.int64)  # 1 MB
    path = write_members(tmp_path / "big.npz", members)
    with pytest.raises(ValueError) as error:
        bounded(lambda: load(path), limit_bytes=2 << 20)
    assert_one_line(error, "declares", "bytes of arrays, more than",
                    "bytes npclust reads from one file (half the available memory)")


def test_model_member_declaring_a_huge_shape_is_refused_before_allocation(saved, tmp_path):
    members = members_of(saved["kmeans"])
    members["array/cluster_centers_"] = npy_bytes((100000, 100000))
    path = write_members(tmp_path / "huge.npz", members)
    with pytest.raises(ValueError) as error:
        bounded(lambda: load(path))
    assert_one_line(error, "declares shape (100000, 100000)", "but holds")


# ------------------------------------------- item 6: the header drives nothing
def _changed(saved, tmp_path, name, change):
    header = header_of(saved[name])
    change(header)
    return with_header(saved[name], tmp_path / "model.npz", header)


@pytest.mark.parametrize("name, change, fragments", [
    # IMSAT asking for a 200,000-feature network (3.8 GB before the fix).
    ("imsat", lambda h: h["scalars"].update(n_features_in_=200000),
     ["weights do not fit IMSAT", "module/network_/0.weight", "(16, 200000)"]),
    ("imsat", lambda h: h["params"].update(hidden_dims=[10 ** 9]), ["weights do not fit IMSAT"]),
    ("dec", lambda h: h["params"].update(latent_dim=10 ** 9), ["weights do not fit DEC"]),
    ("idec", lambda h: h["params"].update(hidden_dims=[16, 10 ** 6]),
     ["weights do not fit IDEC", "missing"]),
    # KMeans with n_clusters 1e9 and 3 saved centres (8.8 GB and a loaded model before).
    ("kmeans", lambda h: h["params"].update(n_clusters=10 ** 9), ["n_clusters"]),
    # n_clusters one more than the centres (predict_proba gave an extra column before).
    ("kmeans", lambda h: h["params"].update(n_clusters=4), ["array/cluster_centers_",
                                                             "need (4, 4)"]),
    ("dec", lambda h: h["params"].update(n_clusters=2), ["array/cluster_centers_"]),
    ("imsat", lambda h: h["params"].update(lr=float("inf")), ["lr must be a finite"]),
    ("imsat", lambda h: h["params"].update(n_clusters="3"), ["n_clusters must be an integer"]),
    ("imsat", lambda h: h["params"].update(dtype="float16"), ["dtype must be"]),
    ("imsat", lambda h: h["params"].update(random_state=-1), ["random_state"]),
    ("imsat", lambda h: h["params"].update(mu={"a": 1}), ["parameter mu has an invalid value"]),
    ("imsat", lambda h: h["params"].update(hidden_dims=[[16]]), ["hidden_dims"]),
    ("imsat", lambda h: h["scalars"].update(objective_=float("nan")), ["finite number"]),
    ("kmeans", lambda h: h["scalars"].update(inertia_="x" * 10 ** 6), ["finite number"]),
    ("kmeans", lambda h: h["params"].update({"x" * 10 ** 6: 1}), ["unknown parameter"]),
    ("kmeans", lambda h: h.update(history=[1, 2]), ["history entries"]),
])
def test_header_is_checked_before_anything_is_built(saved, tmp_path, name, change, fragments):
    path = _changed(saved, tmp_path, name, change)
    with pytest.raises(ValueError) as error:
        bounded(lambda: load(path))
    assert_one_line(error, "model.npz", *fragments)


def test_lr_1e999_in_the_header_is_refused(saved, tmp_path):
    members = members_of(saved["imsat"])
    text = str(members["__npclust__"]).replace('"lr": 0.002', '"lr": 1e999')
    assert "1e999" in text
    members["__npclust__"] = np.array(text)
    path = write_members(tmp_path / "model.npz", members)
    with pytest.raises(ValueError, match="lr must be a finite positive number, got inf"):
        load(path)


def test_labels_outside_the_clusters_are_refused(saved, tmp_path):
    members = members_of(saved["kmeans"])
    members["array/labels_"] = members["array/labels_"] + 7
    with pytest.raises(ValueError, match="labels_ holds cluster indices outside"):
        load(write_members(tmp_path / "model.npz", members))


def test_a_deeply_nested_header_is_refused_without_recursion(saved, tmp_path):
    members = members_of(saved["kmeans"])
    header = json.dumps(header_of(saved["kmeans"]))
    members["__npclust__"] = np.array(header[:-1] + ', "deep": ' + "[" * 200000 + "]" * 200000 + "}")
    path = write_members(tmp_path / "model.npz", members)
    with pytest.raises(ValueError) as error:
        bounded(lambda: load(path), limit_bytes=64 << 20)
    assert_one_line(error, "nested 200001 deep")


def test_brackets_inside_strings_do_not_count_as_nesting(saved, tmp_path):
    header = header_of(saved["kmeans"])
    header["history"][0]["note"] = "[[[[" * 100 + '\\"{{{{' * 100
    path = with_header(saved["kmeans"], tmp_path / "model.npz", header)
    assert type(load(path)) is KMeans


def test_a_huge_class_name_gives_a_short_message(saved, tmp_path):
    header = header_of(saved["kmeans"])
    header["class"] = "K" * (2 << 20)
    path = with_header(saved["kmeans"], tmp_path / "model.npz", header)
    with pytest.raises(ValueError) as error:
        load(path)
    assert_one_line(error, "unknown estimator class 'KKKK")


def test_a_huge_entry_name_gives_a_short_message(saved, tmp_path):
    members = members_of(saved["kmeans"])
    members["array/" + "x" * 50000] = np.zeros(1)
    with pytest.raises(ValueError) as error:
        load(write_members(tmp_path / "model.npz", members))
    assert_one_line(error, "unexpected entries")


# --------------------------------------- item 4: no checkpoint path in a model file
def test_save_drops_the_checkpoint_path(data, tmp_path):
    checkpoint = tmp_path / "fit.ckpt"
    cls, settings = SETTINGS["imsat"]
    model = cls(n_clusters=3, random_state=0, checkpoint=checkpoint, **settings).fit(data)
    model.save(tmp_path / "model.npz")
    assert header_of(tmp_path / "model.npz")["params"]["checkpoint"] is None
    assert model.checkpoint == checkpoint  # the estimator itself keeps its setting
    assert load(tmp_path / "model.npz").checkpoint is None


@pytest.mark.parametrize("name", ["imsat", "dec", "idec"])
def test_a_checkpoint_named_in_a_model_file_is_ignored(saved, tmp_path, data, name):
    target = tmp_path / "planted" / "written-by-refit.npz"
    target.parent.mkdir()
    path = _changed(saved, tmp_path, name, lambda h: h["params"].update(checkpoint=str(target)))
    loaded = load(path)
    assert loaded.checkpoint is None
    loaded.fit(data)
    assert list(target.parent.iterdir()) == []


# ------------------------------------------------- item 7: malformed checkpoints
@pytest.fixture
def checkpoint(data, tmp_path, monkeypatch):
    """A checkpoint of an interrupted two-epoch IMSAT fit, and the parameters to resume it."""
    from npclust.cluster.training import Progress

    params = dict(SETTINGS["imsat"][1], n_clusters=3, random_state=0, n_init=1)
    path = tmp_path / "fit.ckpt"
    original, calls = Progress.record, []

    def record(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Progress, "record", record)
        with pytest.raises(KeyboardInterrupt):
            IMSAT(**params, checkpoint=path).fit(data)
    return path, params


def _edit_checkpoint(path, change=None, arrays=None):
    members = members_of(path)
    header = json.loads(str(members["__npclust__"]))
    if change is not None:
        header = change(header)
    members["__npclust__"] = np.array(json.dumps(header))
    members.update(arrays or {})
    write_members(path, members)


def _set(*keys, value):
    def change(header):
        target = header
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return header
    return change


@pytest.mark.parametrize("change", [
    lambda h: {"kind": "checkpoint", "format_version": 2},
    lambda h: {"kind": "checkpoint", "format_version": 2, "identity": h["identity"],
               "progress": [], "rng": {}},
    _set("rng", value={}),
    _set("rng", value={"bit_generator": "MT19937", "state": {}}),
    _set("rng", value={"bit_generator": "os.system", "state": {}}),
    _set("rng", "state", "state", value="x"),
    _set("progress", "best", value={"x": 1}),
    _set("progress", "best", value={"objective": "nan", "history": [], "restart": 0}),
    _set("progress", "stage", value=5),
    _set("progress", "unit", value=-3),
    _set("progress", "unit", value=10 ** 6),
    _set("progress", "history", value=[1, 2]),
    _set("progress", "restart", value=True),
    _set("progress", "stage_done", value="no"),
])
def test_malformed_checkpoint_header_is_one_line(data, checkpoint, change):
    path, params = checkpoint
    _edit_checkpoint(path, change)
    with pytest.raises(ValueError) as error:
        IMSAT(**params, checkpoint=path).fit(data)
    assert_one_line(error, "checkpoint", "fit.ckpt", "corrupted")


@pytest.mark.parametrize("name, value", [
    ("optimizer/step", np.zeros(3)),
    ("batches/position", np.zeros(3)),
    ("batches/order", np.zeros(3, dtype=np.int64)),
    ("batches/order", np.arange(120)[::-1] % 7),
    ("model/network/0.weight", np.zeros(3)),
    ("optimizer/exp_avg.0", np.full((16, 4), np.nan)),
])
def test_malformed_checkpoint_arrays_are_one_line(data, checkpoint, name, value):
    path, params = checkpoint
    _edit_checkpoint(path, arrays={name: value})
    with pytest.raises(ValueError) as error:
        IMSAT(**params, checkpoint=path).fit(data)
    assert_one_line(error, "fit.ckpt", "corrupted")


def test_a_checkpoint_header_without_its_sections_says_what_it_lacks(data, checkpoint):
    path, params = checkpoint
    _edit_checkpoint(path, lambda header: {"kind": "checkpoint", "format_version": 2})
    with pytest.raises(ValueError) as error:
        IMSAT(**params, checkpoint=path).fit(data)
    assert_one_line(error, "is corrupted (its header lacks identity, progress or random state)")


def test_a_long_array_name_in_a_checkpoint_is_cut_to_60_characters(data, checkpoint):
    path, params = checkpoint
    name = "model/" + "w" * 100
    _edit_checkpoint(path, arrays={name: np.zeros(2, dtype=complex)})
    with pytest.raises(ValueError) as error:
        IMSAT(**params, checkpoint=path).fit(data)
    assert_one_line(error, f"array {name[:60]!r} has dtype complex128, not numbers")


def test_an_intact_checkpoint_still_resumes(data, checkpoint):
    path, params = checkpoint
    reference = IMSAT(**params).fit(data)
    resumed = IMSAT(**params, checkpoint=path).fit(data)
    np.testing.assert_array_equal(resumed.labels_, reference.labels_)


# ------------------------------------------------------------ hypothesis
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 12, 10 ** 12)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=4),
    max_leaves=10)


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    yield path


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SETTINGS)), data_strategy=st.data())
def test_random_header_corruption_gives_only_value_errors(saved, tmp_path, name, data_strategy):
    header = header_of(saved[name])
    leaves = [path for path in _leaves(header) if path and path[0] not in ("kind",)]
    corrupted = copy.deepcopy(header)
    for _ in range(data_strategy.draw(st.integers(1, 3))):
        path = data_strategy.draw(st.sampled_from(leaves))
        target = corrupted
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = data_strategy.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this place
    path = with_header(saved[name], tmp_path / "model.npz", corrupted)
    try:
        model = load(path)
    except ValueError as error:
        assert "\n" not in str(error) and len(str(error)) < 2000
        return
    # Whatever loads must predict like a model of its class.
    X = np.zeros((2, model.n_features_in_), dtype=np.float32)
    proba = model.predict_proba(X)
    assert proba.shape == (2, model.n_clusters) and np.isfinite(proba).all()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data_strategy=st.data())
def test_random_checkpoint_corruption_gives_only_value_errors(data, checkpoint, data_strategy):
    path, params = checkpoint
    original = path.read_bytes()
    header = json.loads(str(members_of(path)["__npclust__"]))
    leaves = [place for place in _leaves(header)
              if place and place[0] in ("identity", "progress", "rng")]
    corrupted = copy.deepcopy(header)
    for _ in range(data_strategy.draw(st.integers(1, 3))):
        place = data_strategy.draw(st.sampled_from(leaves))
        target = corrupted
        try:
            for key in place[:-1]:
                target = target[key]
            target[place[-1]] = data_strategy.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    _edit_checkpoint(path, lambda _: corrupted)
    try:
        IMSAT(**params, checkpoint=path).fit(data)
    except ValueError as error:
        assert "\n" not in str(error) and len(str(error)) < 2000
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("shape, dtype, message", [
    ((1 << 22,), np.float64, "must be 2-D"),
    ((1 << 10, 1 << 5, 1 << 7), np.float64, "must be 2-D"),
    ((1 << 12, 1 << 10), np.complex64, "npclust needs real numbers"),
])
def test_data_npz_of_the_wrong_shape_or_dtype_is_refused_before_inflating(tmp_path, shape, dtype,
                                                                         message):
    path = write_members(tmp_path / "data.npz", {"X": np.zeros(shape, dtype=dtype)},
                         compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(DataFileError) as error:
        bounded(lambda: read_matrix(path), limit_bytes=2 << 20)
    assert_one_line(error, "data.npz", message)
