"""Training data: CIFAR-10, scikit-learn's digits, synthetic 2-D sets and Gaussian mixtures,
served in a deterministic, host-sharded order.

Every data set fits in host memory (CIFAR-10 is 150 MB as uint8), so a source is
an array ``x`` of shape (N, *event_shape): uint8 images (decoded to [-1, 1] per
batch) or float32 points. ``Batches`` fixes the order: epoch ``e`` visits the
permutation ``default_rng([seed, e]).permutation(N)`` in global batches (the
remainder is dropped), global batch ``j`` of the epoch is cut into
``process_count`` equal contiguous slices, and each host gathers only its own
slice. The order is a pure function of (seed, step), so a resumed run sees
exactly the batches an uninterrupted run would, and the concatenation of the
hosts' slices is the same global batch for any number of hosts.

CIFAR-10 is read from the official python-version archive (``cifar-10-python.tar.gz``)
or its extracted ``cifar-10-batches-py`` folder in ``data_dir``: five
``data_batch_i`` pickles and ``test_batch``, each a dict with ``b'data'``
(10000 x 3072 uint8, channel-major 3x32x32 rows) and ``b'labels'``.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from typing import NamedTuple

import numpy as np

from samplers.ode.common import check_choice

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)

DATASETS = ("cifar10", "digits", "gmm", "swiss_roll", "checkerboard", "moons")
SPLITS = ("train", "test")
DIGITS_TEST_SIZE = 297  # 1797 digits: 1500 to train on, 297 held out


class Dataset(NamedTuple):
    """An in-memory data set: ``x`` (N, *event_shape) uint8 images or float32 points, ``y`` labels or None."""

    x: np.ndarray
    y: np.ndarray | None
    image: bool

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` as float32 model inputs: uint8 images to [-1, 1], points unchanged."""
        if x.dtype == np.uint8:
            return x.astype(np.float32) / 127.5 - 1.0
        return x.astype(np.float32)


# -- CIFAR-10 -------------------------------------------------------------------------------

def missing_cifar_error(data_dir: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"CIFAR-10 not found: expected {os.path.join(data_dir, CIFAR10_ARCHIVE)} or the extracted folder "
        f"{os.path.join(data_dir, CIFAR10_FOLDER)}/ (data_batch_1..5, test_batch). Download the python "
        f"version from {CIFAR10_URL} into that directory, or call "
        f"train.data.download_cifar10({data_dir!r}) on a machine with a network."
    )


def _read_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = pickle.loads(raw, encoding="bytes")
    if b"data" not in d or b"labels" not in d:
        raise ValueError(f"CIFAR-10 file {name} lacks b'data' / b'labels'; is it the python version?")
    data = np.asarray(d[b"data"], np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"CIFAR-10 file {name}: data must have shape (N, 3072), got {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # NCHW rows -> NHWC
    return images, np.asarray(d[b"labels"], np.int64)


def load_cifar10(data_dir: str, split: str = "train") -> Dataset:
    """CIFAR-10 ``split`` as uint8 NHWC images (N, 32, 32, 3) and int labels."""
    check_choice("split", split, SPLITS)
    names = CIFAR10_TRAIN if split == "train" else CIFAR10_TEST
    folder = os.path.join(data_dir, CIFAR10_FOLDER)
    archive = os.path.join(data_dir, CIFAR10_ARCHIVE)
    if os.path.isdir(folder) and all(os.path.isfile(os.path.join(folder, n)) for n in names):
        raws = []
        for n in names:
            with open(os.path.join(folder, n), "rb") as f:
                raws.append((f.read(), n))
    elif os.path.isfile(archive):
        with tarfile.open(archive, "r:gz") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in members]
            if missing:
                raise ValueError(f"{archive} lacks {missing}: not the CIFAR-10 python-version archive")
            raws = [(tar.extractfile(members[n]).read(), n) for n in names]
    else:
        raise missing_cifar_error(data_dir)
    parts = [_read_batch(raw, n) for raw, n in raws]
    return Dataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), True)


def _md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_cifar10(data_dir: str, url: str = CIFAR10_URL, md5: str | None = CIFAR10_MD5) -> str:
    """Download the CIFAR-10 python archive into ``data_dir`` (atomically, checksum verified)."""
    os.makedirs(data_dir, exist_ok=True)
    dest = os.path.join(data_dir, CIFAR10_ARCHIVE)
    if os.path.isfile(dest) and (md5 is None or _md5(dest) == md5):
        return dest
    fd, tmp = tempfile.mkstemp(dir=data_dir, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            shutil.copyfileobj(response, out)
        if md5 is not None and _md5(tmp) != md5:
            raise ValueError(f"checksum mismatch for {url}: expected md5 {md5}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


# -- scikit-learn digits --------------------------------------------------------------------

def load_digits(split: str = "train") -> Dataset:
    """scikit-learn's bundled 8x8 digits (values 0..16) as float32 (N, 8, 8, 1) in [-1, 1].

    A fixed permutation (seed 0) holds out ``DIGITS_TEST_SIZE`` images as ``test``.
    """
    check_choice("split", split, SPLITS)
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data set needs scikit-learn (pip install scikit-learn)") from err
    d = sk_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))
    idx = perm[DIGITS_TEST_SIZE:] if split == "train" else perm[:DIGITS_TEST_SIZE]
    x = (d.images[idx] / 8.0 - 1.0).astype(np.float32)[..., None]
    return Dataset(x, d.target[idx].astype(np.int64), True)


# -- synthetic ------------------------------------------------------------------------------

def toy_2d(name: str, n: int = 10_000, seed: int = 0, noise: float = 0.05) -> Dataset:
    """Synthetic 2-D points: ``swiss_roll``, ``checkerboard`` (4x4 cells in [-2, 2]^2) or ``moons``."""
    check_choice("name", name, ("swiss_roll", "checkerboard", "moons"))
    rng = np.random.default_rng(seed)
    if name == "swiss_roll":
        theta = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
        x = np.stack([theta * np.cos(theta), theta * np.sin(theta)], 1) / 5.0
    elif name == "checkerboard":
        u = rng.random((n, 2)) * np.array([2.0, 4.0])
        col, row = np.floor(u[:, 0]), np.floor(u[:, 1])
        x = np.stack([u[:, 0] + col + (row % 2) - 2.0, u[:, 1] - 2.0], 1)  # black cells only
    else:
        upper = rng.random(n) < 0.5
        theta = np.pi * rng.random(n)
        x = np.where(upper[:, None], np.stack([np.cos(theta), np.sin(theta)], 1),
                     np.stack([1.0 - np.cos(theta), 0.5 - np.sin(theta)], 1))
    x = x + noise * rng.standard_normal(x.shape)
    return Dataset(x.astype(np.float32), None, False)


def mixture_of(kwargs) -> "GaussianMixture":
    """The ``models.analytic.random_mixture`` a ``gmm`` data section names (its ``mixture_seed`` etc.)."""
    from models.analytic import random_mixture

    kw = {k: v for k, v in dict(kwargs).items() if k not in ("n", "seed")}
    kw["seed"] = kw.pop("mixture_seed", 0)
    return random_mixture(**kw)


def gmm_data(n: int = 10_000, seed: int = 0, **mixture) -> Dataset:
    """n draws (numpy ``seed``) of ``mixture_of(mixture)``, labelled by component."""
    gmm = mixture_of(mixture)
    rng = np.random.default_rng(seed)
    comp = rng.choice(len(gmm.weights), n, p=gmm.weights)
    chol = np.linalg.cholesky(gmm.covs)
    x = gmm.means[comp] + np.einsum("nij,nj->ni", chol[comp], rng.standard_normal((n, gmm.dim)))
    return Dataset(x.astype(np.float32), comp.astype(np.int64), False)


TEST_SEED_OFFSET = 1_000_003


def load(name: str, split: str = "train", data_dir: str = "", **kwargs) -> Dataset:
    """The data set ``name`` (one of ``DATASETS``); synthetic sets draw ``test`` with another seed."""
    check_choice("data.name", name, DATASETS)
    check_choice("split", split, SPLITS)
    if name == "cifar10":
        return load_cifar10(data_dir, split)
    if name == "digits":
        return load_digits(split)
    kwargs = dict(kwargs)
    if split == "test":
        kwargs["seed"] = kwargs.get("seed", 0) + TEST_SEED_OFFSET
    if name == "gmm":
        return gmm_data(**kwargs)
    return toy_2d(name, **kwargs)


# -- order and sharding ---------------------------------------------------------------------

class Batches:
    """Deterministic, host-sharded batches of a ``Dataset``: a pure function of (seed, step).

    ``random_flip`` mirrors images left-right with probability 1/2, the coin of each
    epoch position drawn from ``default_rng([seed, epoch, 1])``.
    """

    def __init__(self, data: Dataset, global_batch: int, seed: int = 0, process_index: int = 0,
                 process_count: int = 1, random_flip: bool = False):
        n = len(data.x)
        if global_batch < 1 or global_batch > n:
            raise ValueError(f"batch_size must lie in [1, {n}] (the data set size), got {global_batch!r}")
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"process_index must lie in [0, {process_count}), got {process_index!r}")
        if global_batch % process_count:
            raise ValueError(f"batch_size ({global_batch}) must be divisible by the process count ({process_count})")
        if random_flip and not (data.image and len(data.event_shape) == 3):
            raise ValueError("random_flip needs image data of shape (N, H, W, C)")
        self.data, self.global_batch, self.seed = data, int(global_batch), int(seed)
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.local_batch = self.global_batch // self.process_count
        self.random_flip = bool(random_flip)
        self.steps_per_epoch = n // self.global_batch
        self._cache: tuple[int, np.ndarray, np.ndarray | None] | None = None

    def _epoch(self, epoch: int):
        if self._cache is None or self._cache[0] != epoch:
            n = len(self.data.x)
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            flips = np.random.default_rng([self.seed, epoch, 1]).random(n) < 0.5 if self.random_flip else None
            self._cache = (epoch, perm, flips)
        return self._cache[1], self._cache[2]

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index within the epoch) of global step ``step``."""
        return divmod(int(step), self.steps_per_epoch)

    def indices(self, step: int, process_index: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Row indices (and flip flags) of host ``process_index``'s slice of batch ``step``."""
        p = self.process_index if process_index is None else process_index
        epoch, j = self.position(step)
        perm, flips = self._epoch(epoch)
        lo = j * self.global_batch + p * self.local_batch
        sl = slice(lo, lo + self.local_batch)
        return perm[sl], None if flips is None else flips[sl]

    def __call__(self, step: int) -> np.ndarray:
        """This host's float32 slice of global batch ``step``, shape (local_batch, *event_shape)."""
        idx, flips = self.indices(step)
        x = self.data.decode(self.data.x[idx])
        if flips is not None:
            x = np.where(flips[:, None, None, None], x[:, :, ::-1], x)
        return x

    def state(self, step: int) -> dict:
        """What fixes the data order at ``step`` (stored with checkpoints, checked on resume)."""
        epoch, j = self.position(step)
        return {"seed": self.seed, "epoch": epoch, "batch_in_epoch": j, "global_batch": self.global_batch,
                "num_examples": int(len(self.data.x))}
