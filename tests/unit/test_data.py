"""Data sets: the embedded default, .npz files, and torchvision's real on-disk formats
(built here, tiny, with checksums patched to theirs; the download path reads a file:// URL)."""

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import reprolib  # noqa: F401
import reprolib
from reprolib import data
from reprolib.errors import ReprolibError


def test_digits_split_size_and_channels():
    d = data.get_data("digits", image_size=24, batch_size=50)
    assert (d.train_size, d.test_size, d.num_classes) == (1437, 360, 10)
    x, y = next(iter(d.train))
    assert x.shape == (50, 3, 24, 24) and x.dtype == torch.float32 and y.dtype == torch.int64
    xs = torch.cat([b[0] for b in d.test])
    assert xs.shape[0] == 360
    assert abs(xs.mean().item()) < 0.2  # normalised with the training statistics


def test_loader_is_deterministic_per_epoch_and_shuffles_between():
    d = data.get_data("digits", 16, 64, seed=3)
    d.train.set_epoch(1)
    a = [y.clone() for _, y in d.train]
    d.train.set_epoch(1)
    b = [y.clone() for _, y in d.train]
    d.train.set_epoch(2)
    c = [y.clone() for _, y in d.train]
    assert all(torch.equal(i, j) for i, j in zip(a, b))
    assert not all(torch.equal(i, j) for i, j in zip(a, c))


def test_crop_flip_augmentation_keeps_content():
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.uint8).view(2, 3, 8, 8)
    lab = torch.tensor([0, 1])
    kw = dict(image_size=8, mean=(0, 0, 0), std=(1, 1, 1), shuffle=False, seed=0)
    plain = next(iter(data.TensorLoader(img, lab, 2, augment=False, **kw)))[0]
    assert torch.allclose(plain * 255, img.float())
    aug = data.TensorLoader(img, lab, 2, augment=True, pad=0, **kw)
    x = next(iter(aug))[0] * 255
    for i in range(2):  # with no padding a crop is the identity; a flip mirrors the width
        assert torch.allclose(x[i], img[i].float()) or torch.allclose(x[i], img[i].float().flip(2))
    padded = next(iter(data.TensorLoader(img, lab, 2, augment=True, pad=2, flip=False, **kw)))[0]
    assert padded.shape == (2, 3, 8, 8)


def test_npz_dataset(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "toy.npz"
    np.savez(p, train_images=rng.integers(0, 255, (40, 12, 12, 3), dtype=np.uint8),
             train_labels=np.arange(40) % 4, test_images=rng.integers(0, 255, (8, 12, 12, 3), dtype=np.uint8),
             test_labels=np.arange(8) % 4, classes=np.array(["a", "b", "c", "d"]))
    d = data.get_data(f"npz:{p}", image_size=32, batch_size=16)
    assert d.classes == ["a", "b", "c", "d"] and d.num_classes == 4
    assert next(iter(d.test))[0].shape == (8, 3, 32, 32)  # resized on the fly


def test_bad_data_set_names_and_files(tmp_path):
    with pytest.raises(ReprolibError, match="unknown data set 'mnist'.*digits.*npz:PATH.*cifar10"):
        data.get_data("mnist")
    with pytest.raises(ReprolibError, match="does not exist"):
        data.get_data(f"npz:{tmp_path}/none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ReprolibError, match="not a readable .npz"):
        data.get_data(f"npz:{tmp_path}/bad.npz")


def test_cifar10_subset_is_real_cifar(cifar10_subset):
    d = data.get_data(cifar10_subset, 32, 256)
    assert (d.train_size, d.test_size, d.num_classes) == (5085, 1017, 10)
    assert d.classes[0] == "airplane"


def _md5(p):
    return hashlib.md5(p.read_bytes()).hexdigest()


def _write_cifar_archive(tmp_path, n=4):
    """cifar-10-python.tar.gz in the exact layout torchvision reads, with n images per batch."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "src" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                         "labels": list(range(n))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    return tgz, {name: _md5(folder / name) for name in names + ["batches.meta"]}


@pytest.fixture
def http_dir(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path (torchvision's downloader needs http)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_cifar10_download_path_offline(tmp_path, monkeypatch, http_dir):
    """torchvision's own download_and_extract_archive, against a loopback server."""
    monkeypatch.setenv("REPROLIB_DOWNLOAD", "1")   # a folder outside the project
    import torchvision

    tgz, md5 = _write_cifar_archive(tmp_path)
    C = torchvision.datasets.CIFAR10
    monkeypatch.setattr(C, "url", f"{http_dir}/{tgz.name}")
    monkeypatch.setattr(C, "tgz_md5", _md5(tgz))
    monkeypatch.setattr(C, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(C, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(C, "meta", {**C.meta, "md5": md5["batches.meta"]})
    root = tmp_path / "data"
    d = data.get_data("cifar10", 32, 8, root=root)  # downloads, checks md5, extracts
    assert (root / "cifar-10-python.tar.gz").exists()
    assert (d.train_size, d.test_size, d.num_classes) == (20, 4, 10)
    assert d.classes[3] == "class3"
    x, y = next(iter(d.test))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 1, 2, 3]


def test_cifar10_subset_builder_on_the_real_format(tmp_path, monkeypatch, http_dir):
    """cifar10_subset = the first k images of each CIFAR-10 batch file, in order, built once
    from torchvision's download and cached in data/."""
    import torchvision

    tgz, md5 = _write_cifar_archive(tmp_path, n=6)
    C = torchvision.datasets.CIFAR10
    monkeypatch.setattr(C, "url", f"{http_dir}/{tgz.name}")
    monkeypatch.setattr(C, "tgz_md5", _md5(tgz))
    monkeypatch.setattr(C, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(C, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(C, "meta", {**C.meta, "md5": md5["batches.meta"]})
    out = data.build_cifar10_subset(tmp_path / "dl", tmp_path / "subset.npz", per_batch=4)
    z = np.load(out)
    src = tmp_path / "src" / "cifar-10-batches-py"
    want = []
    for i in range(1, 6):
        with open(src / f"data_batch_{i}", "rb") as f:
            want.append(pickle.load(f)["data"][:4])
    want = np.concatenate(want).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert z["train_images"].shape == (20, 32, 32, 3) and z["train_images"].dtype == np.uint8
    assert np.array_equal(z["train_images"], want)
    assert z["train_labels"].tolist() == [0, 1, 2, 3] * 5 and z["test_labels"].tolist() == [0, 1, 2, 3]
    assert list(z["classes"][:2]) == ["class0", "class1"]
    # the named data set builds into data/ when no copy is configured or beside the project
    monkeypatch.delenv("REPROLIB_CIFAR10_SUBSET", raising=False)
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(reprolib.paths, "ROOT", tmp_path / "clone" / "repo")   # no ../shared here
    monkeypatch.setattr(data.sources, "SUBSET_PER_BATCH", 6)
    d = data.get_data("cifar10_subset", 32, 8, root=tmp_path / "dl")
    assert (d.train_size, d.test_size) == (30, 6)
    assert (tmp_path / "cache" / "cifar10_subset.npz").exists()


def test_cifar10_subset_equals_the_shared_copy(cifar10_subset):
    """Where the full CIFAR-10 is at hand (REPROLIB_CIFAR10_ROOT), the builder reproduces the
    shared file array for array."""
    import os

    root = os.environ.get("REPROLIB_CIFAR10_ROOT")
    if not root:
        pytest.skip("set REPROLIB_CIFAR10_ROOT to a folder with cifar-10-batches-py to compare")
    import tempfile

    out = data.build_cifar10_subset(root, Path(tempfile.mkdtemp()) / "s.npz", download=False)
    a, b = np.load(out), np.load(data.cifar10_subset_file(build=False))
    for k in ("train_images", "train_labels", "test_images", "test_labels", "classes"):
        assert np.array_equal(a[k], b[k]), k


def test_missing_cifar_is_a_clear_error(tmp_path, monkeypatch, http_dir):
    monkeypatch.setenv("REPROLIB_DOWNLOAD", "1")   # a folder outside the project
    import torchvision

    monkeypatch.setattr(torchvision.datasets.CIFAR100, "url", f"{http_dir}/nowhere.tgz")
    with pytest.raises(ReprolibError, match="data set cifar100 is missing.*could not be downloaded"):
        data.get_data("cifar100", root=tmp_path / "data")


def test_flowers102_on_disk_format(tmp_path, monkeypatch):
    import scipy.io
    import torchvision
    from PIL import Image

    base = tmp_path / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    n = 12
    for i in range(1, n + 1):
        Image.fromarray(np.full((40, 50, 3), i * 10, np.uint8)).save(base / "jpg" / f"image_{i:05d}.jpg")
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([(i % 3) + 1 for i in range(n)])})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.arange(1, 5), "valid": np.arange(5, 9),
                                          "tstid": np.arange(9, 13)})
    F = torchvision.datasets.Flowers102
    monkeypatch.setattr(F, "_file_dict", {"image": ("102flowers.tgz", None),
                                          "label": ("imagelabels.mat", _md5(base / "imagelabels.mat")),
                                          "setid": ("setid.mat", _md5(base / "setid.mat"))})
    d = data.get_data("flowers102", 32, 4, root=tmp_path, workers=0)
    assert (d.train_size, d.test_size, d.num_classes) == (8, 4, 102)
    x, y = next(iter(d.train))
    assert x.shape == (4, 3, 32, 32) and int(y.max()) <= 2
    held = data.get_data("flowers102", 32, 4, root=tmp_path, workers=0, val_fraction=0.1)
    assert (held.train_size, held.val.dataset_size) == (4, 4)  # the official val split


def test_imagenet_folder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((20, 30, 3), 50 * i, np.uint8)).save(tmp_path / split / c / f"{i}.png")
    d = data.get_data("imagenet", 16, 2, root=tmp_path, workers=0)
    assert d.classes == ["n01", "n02"] and (d.train_size, d.test_size) == (6, 6)
    assert next(iter(d.test))[0].shape == (4, 3, 16, 16)
    held = data.get_data("imagenet", 16, 2, root=tmp_path, workers=0, val_fraction=0.5)
    assert (held.train_size, held.val.dataset_size) == (3, 3)
    with pytest.raises(ReprolibError, match="imagenet needs a folder"):
        data.get_data("imagenet")


def test_manifest_checksums_agree_with_torchvision():
    import json

    import torchvision

    from reprolib import paths

    man = json.loads((paths.ROOT / "data" / "manifest.json").read_text())
    assert man["cifar10"]["md5"] == torchvision.datasets.CIFAR10.tgz_md5
    assert man["cifar100"]["md5"] == torchvision.datasets.CIFAR100.tgz_md5
    fl = torchvision.datasets.Flowers102._file_dict
    assert man["flowers102"]["md5"] == fl["image"][1]
    assert man["flowers102"]["files"] == {fl["label"][0]: fl["label"][1], fl["setid"][0]: fl["setid"][1]}


def _npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(train_images=rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8),
                  train_labels=np.arange(20) % 4,
                  test_images=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8),
                  test_labels=np.arange(6) % 4)
    arrays.update(over)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return f"npz:{path}"


@pytest.mark.parametrize("over, message", [
    (dict(train_labels=np.arange(15) % 4), "train_images holds 20 images but train_labels 15"),
    (dict(test_labels=np.array([0, 1, 2, 3, 9, 1])), "test_labels holds the label 9, but its training labels give 4"),
    (dict(train_labels=np.array([0] * 19 + [10**9])), "train_labels holds the label 1000000000 but there are only 20"),
    (dict(train_labels=np.arange(20) % 4, classes=np.array(["a", "b"])), "train_labels holds the label 3, but its classes array names 2"),
    (dict(train_labels=np.arange(20) % 4 - 1), "negative label -1"),
    (dict(train_labels=np.linspace(0, 3, 20)), "must hold integer class indices"),
    (dict(train_images=np.zeros((0, 8, 8, 3), np.uint8), train_labels=np.zeros(0, np.int64)), "train_images is empty"),
    (dict(test_images=np.array([None] * 6, dtype=object)), "test_images cannot be read without unpickling"),
    (dict(train_images=np.full((20, 8, 8, 3), np.nan)), "train_images holds NaN"),
    (dict(train_images=np.zeros((20, 8, 8, 4), np.uint8)), "must have 1 or 3 channels"),
    (dict(test_labels=None), "lacks arrays ['test_labels']"),
])
def test_npz_arrays_are_checked_before_use(tmp_path, over, message):
    """Counts agree, labels are integers in range, no empty or pickled arrays: one clear error
    naming the array, from the check that runs before any stage (prepare_data)."""
    spec = _npz(tmp_path / "d.npz", **over)
    with pytest.raises(ReprolibError) as e:
        data.prepare_data(spec)
    assert message in str(e.value) and "d.npz" in str(e.value)


def test_whole_number_float_labels_are_accepted(tmp_path):
    spec = _npz(tmp_path / "d.npz", train_labels=(np.arange(20) % 4).astype(np.float32))
    d = data.get_data(spec, 8, 4)
    assert d.num_classes == 4 and d.train.labels.dtype == torch.int64


def test_a_stalled_download_gives_up_with_a_clear_error(tmp_path, monkeypatch):
    """A server that accepts and never answers: the download stops after
    REPROLIB_DOWNLOAD_TIMEOUT seconds and says so (it used to block for ever)."""
    import socket
    import threading
    import time

    import torchvision

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held = []
    threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url",
                        f"http://127.0.0.1:{srv.getsockname()[1]}/cifar.tgz")
    monkeypatch.setenv("REPROLIB_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("REPROLIB_DOWNLOAD", "1")
    t0 = time.perf_counter()
    with pytest.raises(ReprolibError, match="did not answer within 1 s"):
        data.prepare_data("cifar10", tmp_path / "dl")
    assert time.perf_counter() - t0 < 30
    srv.close()


def test_data_roots_are_checked_and_nothing_is_created_outside_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("REPROLIB_DOWNLOAD", raising=False)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ReprolibError, match=f"data root {afile} is not a folder"):
        data.prepare_data("cifar100", afile)
    missing = tmp_path / "datasets"
    with pytest.raises(ReprolibError, match=f"data root {missing} does not exist.*--download"):
        data.prepare_data("flowers102", missing)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReprolibError, match=f"cifar10 is not under {empty}.*--download"):
        data.prepare_data("cifar10", empty)
    assert list(empty.iterdir()) == []
    with pytest.raises(ReprolibError, match="imagenet needs a folder: pass --data-root"):
        data.prepare_data("imagenet")
    assert data.may_download(None) and not data.may_download(empty)
    monkeypatch.setenv("REPROLIB_DOWNLOAD", "1")
    assert data.may_download(empty)


def test_a_clone_without_the_subset_and_without_internet_says_what_to_do(tmp_path, monkeypatch,
                                                                        http_dir):
    """`reprolib run quickstart --profile cpu` in a fresh clone with no file beside it and no
    CIFAR-10 reachable: one error before any stage, naming the paths and the options."""
    import torchvision

    monkeypatch.delenv("REPROLIB_CIFAR10_SUBSET", raising=False)
    monkeypatch.setenv("REPROLIB_DATA", str(tmp_path / "clone" / "repo" / "data"))
    monkeypatch.setattr(reprolib.paths, "ROOT", tmp_path / "clone" / "repo")
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"{http_dir}/nowhere.tgz")
    with pytest.raises(ReprolibError, match="data set cifar10 is missing under .*could not be "
                                            "downloaded.*--data-root"):
        data.prepare_data("cifar10_subset")
    assert not (tmp_path / "clone" / "repo" / "data" / "cifar10_subset.npz").exists()
