"""Data: CIFAR-10 in the official python format (a fake archive built here), the missing-file error,
the download helper, digits, synthetic sets, and deterministic host-sharded batches."""
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from train import data as data_lib

try:
    import sklearn  # noqa: F401

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_SKLEARN = False

PER_FILE = {**{f"data_batch_{i}": 3 for i in range(1, 6)}, "test_batch": 4}


def fake_cifar(rng):
    """{file name: (rows (n, 3072) uint8, labels)} in the layout of the official pickles."""
    return {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
            for name, n in PER_FILE.items()}


def write_archive(path, files, folder=True):
    """The python-version archive: cifar-10-batches-py/<name> pickles with b'data', b'labels', ..."""
    with tarfile.open(path, "w:gz") as tar:
        for name, (rows, labels) in files.items():
            raw = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                                b"filenames": [b"x.png"] * len(labels)}, protocol=2)
            info = tarfile.TarInfo(f"{data_lib.CIFAR10_FOLDER}/{name}" if folder else name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def check_cifar(ds, files, names):
    rows = np.concatenate([files[n][0] for n in names])
    labels = np.concatenate([files[n][1] for n in names])
    assert ds.x.shape == (len(rows), 32, 32, 3) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.y, labels)
    # pixel (i, j) of channel c is byte c*1024 + i*32 + j of the row
    np.testing.assert_array_equal(ds.x[1, 4, 7], rows[1, [4 * 32 + 7, 1024 + 4 * 32 + 7, 2048 + 4 * 32 + 7]])
    x = ds.decode(ds.x[:2])
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0


def test_cifar_from_archive_and_from_extracted_folder(tmp_path):
    files = fake_cifar(np.random.default_rng(0))
    write_archive(tmp_path / data_lib.CIFAR10_ARCHIVE, files)
    check_cifar(data_lib.load_cifar10(str(tmp_path), "train"), files, data_lib.CIFAR10_TRAIN)
    check_cifar(data_lib.load("cifar10", "test", str(tmp_path)), files, ["test_batch"])

    with tarfile.open(tmp_path / data_lib.CIFAR10_ARCHIVE) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    os.remove(tmp_path / data_lib.CIFAR10_ARCHIVE)
    check_cifar(data_lib.load_cifar10(str(tmp_path / "extracted"), "train"), files, data_lib.CIFAR10_TRAIN)


def test_missing_cifar_names_url_and_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        data_lib.load_cifar10(str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert data_lib.CIFAR10_URL in msg
    assert os.path.join(str(tmp_path / "nowhere"), data_lib.CIFAR10_ARCHIVE) in msg
    assert data_lib.CIFAR10_FOLDER in msg


def test_wrong_archive_is_a_clear_error(tmp_path):
    files = fake_cifar(np.random.default_rng(1))
    del files["data_batch_3"]
    write_archive(tmp_path / data_lib.CIFAR10_ARCHIVE, files)
    with pytest.raises(ValueError, match="data_batch_3"):
        data_lib.load_cifar10(str(tmp_path))


def test_download_helper_verifies_checksum_and_writes_atomically(tmp_path):
    src = tmp_path / "mirror.tar.gz"
    write_archive(src, fake_cifar(np.random.default_rng(2)))
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    dest_dir = tmp_path / "data"
    with pytest.raises(ValueError, match="checksum"):
        data_lib.download_cifar10(str(dest_dir), url=src.as_uri(), md5="0" * 32)
    assert os.listdir(dest_dir) == []  # nothing half-written is left behind
    path = data_lib.download_cifar10(str(dest_dir), url=src.as_uri(), md5=md5)
    assert path == str(dest_dir / data_lib.CIFAR10_ARCHIVE)
    assert data_lib.load_cifar10(str(dest_dir)).x.shape == (15, 32, 32, 3)


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")
def test_digits_split_and_range():
    train, test = data_lib.load_digits("train"), data_lib.load_digits("test")
    assert train.x.shape == (1797 - data_lib.DIGITS_TEST_SIZE, 8, 8, 1) and test.x.shape == (297, 8, 8, 1)
    assert train.x.dtype == np.float32 and train.x.min() == -1.0 and train.x.max() == 1.0
    assert set(np.unique(train.y)) == set(range(10))
    both = np.concatenate([train.x, test.x]).reshape(1797, -1)
    assert len(np.unique(both, axis=0)) >= 1797 - 10  # disjoint splits (a few digits are duplicates in the set)


@pytest.mark.parametrize("name", ["swiss_roll", "checkerboard", "moons", "gmm"])
def test_synthetic_sets(name):
    ds = data_lib.load(name, "train", n=500, seed=3)
    assert ds.x.shape == (500, 2) and ds.x.dtype == np.float32 and np.all(np.isfinite(ds.x))
    np.testing.assert_array_equal(ds.x, data_lib.load(name, "train", n=500, seed=3).x)
    assert not np.allclose(ds.x, data_lib.load(name, "test", n=500, seed=3).x)


def test_gmm_data_follow_the_mixture():
    kw = dict(n=20_000, dim=3, num_components=2, mixture_seed=4)
    ds = data_lib.load("gmm", **kw)
    gmm = data_lib.mixture_of(kw)
    np.testing.assert_allclose(ds.x.mean(0), gmm.mean, atol=0.05)
    np.testing.assert_allclose(np.cov(ds.x.T), gmm.cov, atol=0.1)


def test_host_shards_are_disjoint_and_cover_each_epoch():
    ds = data_lib.Dataset(np.arange(103, dtype=np.float32)[:, None], None, False)
    hosts = [data_lib.Batches(ds, 10, seed=5, process_index=p, process_count=2) for p in range(2)]
    single = data_lib.Batches(ds, 10, seed=5)
    assert hosts[0].steps_per_epoch == 10 and hosts[0].local_batch == 5
    for epoch in range(2):
        steps = range(epoch * 10, epoch * 10 + 10)
        shard = [np.concatenate([h.indices(s)[0] for s in steps]) for h in hosts]
        assert len(np.intersect1d(shard[0], shard[1])) == 0
        union = np.concatenate(shard)
        assert len(np.unique(union)) == 100  # the whole epoch but the 3 dropped as remainder
        for s in steps:  # the hosts' slices, in process order, are the single-host global batch
            np.testing.assert_array_equal(np.concatenate([h(s) for h in hosts]), single(s))
    e0 = np.concatenate([single.indices(s)[0] for s in range(10)])
    e1 = np.concatenate([single.indices(s)[0] for s in range(10, 20)])
    assert not np.array_equal(e0, e1)  # reshuffled every epoch
    fresh = data_lib.Batches(ds, 10, seed=5, process_index=1, process_count=2)
    np.testing.assert_array_equal(fresh(17), hosts[1](17))  # a pure function of (seed, step)
    assert single.state(23) == {"seed": 5, "epoch": 2, "batch_in_epoch": 3, "global_batch": 10, "num_examples": 103}


def test_random_flip_is_deterministic_and_mirrors():
    rng = np.random.default_rng(0)
    ds = data_lib.Dataset(rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8), None, True)
    plain = data_lib.Batches(ds, 40, seed=1)
    flip = data_lib.Batches(ds, 40, seed=1, random_flip=True)
    a, b = plain(0), flip(0)
    flipped = np.array([not np.array_equal(a[i], b[i]) for i in range(40)])
    assert 5 < flipped.sum() < 35
    np.testing.assert_array_equal(b[flipped], a[flipped][:, :, ::-1])
    np.testing.assert_array_equal(flip(0), data_lib.Batches(ds, 40, seed=1, random_flip=True)(0))


@pytest.mark.parametrize("kwargs,match", [
    (dict(global_batch=0), "batch_size"),
    (dict(global_batch=11), "batch_size"),
    (dict(global_batch=9, process_count=2, process_index=0), "divisible"),
    (dict(global_batch=4, process_count=2, process_index=2), "process_index"),
    (dict(global_batch=4, random_flip=True), "random_flip"),
])
def test_bad_batches_arguments(kwargs, match):
    ds = data_lib.Dataset(np.zeros((10, 2), np.float32), None, False)
    with pytest.raises(ValueError, match=match):
        data_lib.Batches(ds, **kwargs)


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="data.name must be one of"):
        data_lib.load("mnist")
