"""Where the images come from: the embedded digits, any ``.npz``, CIFAR-10/100 and
Flowers-102 through torchvision, the CIFAR-10 subset, and the checks that every data set a
config needs is there and readable before any stage runs (:func:`prepare_data`)."""

from __future__ import annotations

import math
import os
import socket
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprolib import paths
from reprolib.data.catalog import (_DOWNLOAD_MB, _ON_DISK, CIFAR10_SUBSET,  # noqa: F401
                                   DATASETS, DETECTION_DATASETS, SUBSET_PER_BATCH,
                                   check_dataset)
from reprolib.errors import ReprolibError

#: The most bytes the arrays of an ``.npz`` may decompress to; None: ``NPZ_MEMORY_FRACTION``
#: of the memory available when it is read.  Checked from the ``.npy`` headers inside the
#: zip before any array is decompressed (a 3 MB file of zeros can hold 3 GB of images).
NPZ_MAX_BYTES: int | None = None
#: Reading makes copies (NCHW, 3 channels; ``get_data`` then holds float statistics of the
#: training set), so the arrays may take only this fraction of the available memory.
NPZ_MEMORY_FRACTION = 0.25
#: The most classes an ``.npz``'s ``classes`` array may name (ImageNet-21k has 21,841).
MAX_CLASSES = 100_000


@dataclass
class ArrayDataset:
    """A small data set as uint8 arrays: images (N, C, H, W) and int64 labels."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    flip: bool = True              # horizontal flips are label-preserving


def _nchw(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ReprolibError(f"{what} must have shape (N, H, W[, C]) or (N, C, H, W), got {a.shape}")
    if a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.shape[1] not in (1, 3):
        raise ReprolibError(f"{what} must have 1 or 3 channels (grey or RGB), got shape {a.shape}")
    if a.dtype != np.uint8 and a.size:
        lo, hi = a.min(), a.max()
        if lo < 0 or hi > 255:    # refused, not clipped: the pixels would silently change
            raise ReprolibError(f"{what} holds values from {_num(lo)} to {_num(hi)}; pixels "
                                "must be integers 0..255 or floats in [0, 1] (scaled by 255) "
                                "or [0, 255] -- store the images as uint8 0..255 (undo any "
                                "normalisation)")
        if hi <= 1.0:
            a = a * 255.0
        a = np.rint(a).astype(np.uint8)
    if a.shape[1] == 1:
        a = np.repeat(a, 3, axis=1)
    return np.ascontiguousarray(a)


def load_digits(size: int = 32) -> ArrayDataset:
    """scikit-learn's digits at ``size`` px, 3 channels, fixed stratified 80/20 split."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    d = sk_digits()
    img = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]   # 0..1, (N,1,8,8)
    img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    img = (img.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).numpy()
    tr, te = train_test_split(np.arange(len(d.target)), test_size=0.2, random_state=0,
                              stratify=d.target)
    return ArrayDataset(img[tr], d.target[tr].astype(np.int64), img[te],
                        d.target[te].astype(np.int64), [str(c) for c in d.target_names],
                        flip=False)


_NPZ_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def _npz_array(z, key: str, where: str) -> np.ndarray:
    try:
        a = z[key]
        if not isinstance(a, np.ndarray):     # a member without the .npy magic: raw bytes
            raise ReprolibError(f"{where}: {key} is not an .npy array (the archive member "
                                "holds other bytes); write the arrays with numpy.savez")
        return a
    except ReprolibError:
        raise
    except ValueError as e:   # an object array: refused, np.load runs with allow_pickle=False
        raise ReprolibError(f"{where}: array {key} cannot be read without unpickling "
                            f"({str(e).splitlines()[0][:80]}); store it as a plain numeric "
                            f"array") from None
    except Exception as e:  # noqa: BLE001 - a truncated member: one clear error
        raise ReprolibError(f"{where}: array {key} is unreadable ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:80] if str(e) else ''}); the file is "
                            f"truncated or corrupt") from None


def _num(v) -> str:
    """A value of an array as its exact integer, or a short float."""
    return str(int(v)) if np.asarray(v).dtype.kind in "iub" else f"{float(v):g}"


def _labels(y: np.ndarray, key: str, where: str) -> np.ndarray:
    if y.ndim != 1:
        raise ReprolibError(f"{where}: {key} must be one label per image (shape (N,)), got "
                            f"shape {y.shape}")
    whole = y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()
    if y.dtype.kind not in "iu" and not whole:      # whole numbers stored as floats are fine
        raise ReprolibError(f"{where}: {key} must hold integer class indices, got dtype "
                            f"{y.dtype}")
    if len(y):    # in the labels' own dtype: a cast to int64 would wrap uint64 / 1e20 first
        lo, hi = y.min(), y.max()
        if lo < 0:
            raise ReprolibError(f"{where}: {key} holds the negative label {_num(lo)}; labels "
                                "are class indices 0..K-1")
        if (int(hi) if y.dtype.kind in "iu" else float(hi)) >= 2**63:
            raise ReprolibError(f"{where}: {key} holds the label {_num(hi)}, beyond any class "
                                "index; labels are class indices 0..K-1")
    return y.astype(np.int64)


def available_memory() -> int:
    """Bytes a process can allocate now: ``MemAvailable`` of ``/proc/meminfo`` (capped by a
    cgroup v2 memory limit), else the free physical pages (``os.sysconf``), else the
    physical memory, else 8 GiB."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            try:
                avail = os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
                break
            except (ValueError, OSError, AttributeError):
                continue
    try:   # a container's limit: MemAvailable shows the host's memory
        cg = Path("/sys/fs/cgroup")
        top = (cg / "memory.max").read_text().strip()
        if top != "max":
            left = int(top) - int((cg / "memory.current").read_text())
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return max(int(avail if avail is not None else 8 * 2**30), 0)


def npz_byte_limit() -> int:
    """The most bytes the arrays of an ``.npz`` may decompress to: ``NPZ_MAX_BYTES``, else
    ``NPZ_MEMORY_FRACTION`` of :func:`available_memory`."""
    if NPZ_MAX_BYTES is not None:
        return int(NPZ_MAX_BYTES)
    return int(NPZ_MEMORY_FRACTION * available_memory())


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, where: str) -> int:
    """The bytes ``np.load`` would decompress for the archive member ``info``, from its
    ``.npy`` header alone (the first bytes of the member); a header whose shape x itemsize
    disagrees with the size the zip declares is a corrupt file."""
    fmt = np.lib.format
    try:
        with zf.open(info) as f:
            magic = f.read(fmt.MAGIC_LEN)
            if magic[:len(fmt.MAGIC_PREFIX)] != fmt.MAGIC_PREFIX or len(magic) < fmt.MAGIC_LEN:
                return info.file_size          # not an .npy: np.load reads it as raw bytes
            version = (magic[-2], magic[-1])
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:     # 3.0 (utf-8 field names) has no public reader
                shape, _, dtype = fmt._read_array_header(f, version)
            header = f.tell()
    except Exception as e:  # noqa: BLE001 - a bad header, a truncated or encrypted member
        raise ReprolibError(f"{where}: array {key} is unreadable ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:80] if str(e) else ''}); the file is "
                            "truncated or corrupt") from None
    if dtype.hasobject:
        return 0                               # refused unread (allow_pickle=False)
    n = math.prod(shape) * dtype.itemsize
    if header + n != info.file_size:
        raise ReprolibError(f"{where}: array {key} is corrupt: its .npy header gives shape "
                            f"{tuple(shape)} of {dtype} ({n:,} bytes), but the archive member "
                            f"holds {info.file_size - header:,} bytes of data")
    return n


def _check_npz_sizes(p: Path, where: str) -> None:
    """Refuse, before any array is decompressed, an ``.npz`` whose arrays would not fit in
    memory (:func:`npz_byte_limit`) or whose ``.npy`` headers disagree with the zip's sizes.
    A file that is a single ``.npy`` is refused unread; one that is not a zip at all is left
    to ``np.load`` (its size on disk is what it holds)."""
    if not zipfile.is_zipfile(p):
        with open(p, "rb") as f:
            if f.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
                raise ReprolibError(f"{where} holds one array, not an .npz archive of "
                                    f"{', '.join(_NPZ_ARRAYS)}")
        return
    try:
        zf = zipfile.ZipFile(p)
    except Exception as e:  # noqa: BLE001 - a broken central directory
        raise ReprolibError(f"{where} is not a readable .npz: {e}") from None
    sizes = {}
    with zf:
        for info in zf.infolist():
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            if key in (*_NPZ_ARRAYS, "classes"):       # the members load_npz reads
                sizes[key] = sizes.get(key, 0) + _member_bytes(zf, info, key, where)
    total, limit = sum(sizes.values()), npz_byte_limit()
    if total > limit:
        big = max(sizes, key=sizes.get)
        raise ReprolibError(
            f"{where} decompresses to {_gib(total)} of arrays ({big} alone {_gib(sizes[big])}), "
            f"more than the {_gib(limit)} this machine can hold now ({NPZ_MEMORY_FRACTION:.0%} "
            f"of the available memory, or reprolib.data.NPZ_MAX_BYTES); nothing was loaded: "
            "use a smaller data set or a machine with more memory")


def load_npz(path: str | os.PathLike) -> ArrayDataset:
    """An .npz with train_images, train_labels, test_images, test_labels[, classes].

    Checked before anything uses it.  First from the ``.npy`` headers inside the zip, before
    any array is decompressed: the arrays fit in memory (:func:`npz_byte_limit`) and each
    header agrees with the size its member declares.  Then array by array: each image array
    holds as many images as its label array has labels, no set is empty, images are numeric
    (N, H, W[, C]) or (N, C, H, W) with 1 or 3 channels and no zero-sized side, pixels are
    0..255 (floats in [0, 1] are scaled by 255; anything outside is refused, not clipped),
    labels are integers in ``0..K-1`` (checked in their own dtype, before any cast) where
    ``K`` is the length of ``classes`` (one name per class, at most :data:`MAX_CLASSES`) or,
    without it, one more than the largest training label, which must be below the number of
    training images.  Object (pickled) arrays are refused.
    """
    p = paths.resolve(path)
    where = f"data set file {path}"
    if not p.exists():
        raise ReprolibError(f"{where} does not exist (resolved to {p}); pass an existing .npz "
                            "(see data/README.md)")
    if p.is_dir():
        raise ReprolibError(f"{where} is a folder ({p}), not an .npz file")
    _check_npz_sizes(p, where)
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ReprolibError(f"{where} is not a readable .npz: {e}") from None
    if not hasattr(z, "files"):
        raise ReprolibError(f"{where} holds one array, not an .npz archive of "
                            f"{', '.join(_NPZ_ARRAYS)}")
    missing = [k for k in _NPZ_ARRAYS if k not in z.files]
    if missing:
        raise ReprolibError(f"{where} lacks arrays {missing}; an npz data set needs "
                            f"{list(_NPZ_ARRAYS)}")
    arr = {k: _npz_array(z, k, where) for k in _NPZ_ARRAYS}
    for split in ("train", "test"):
        x, y = arr[f"{split}_images"], arr[f"{split}_labels"]
        if x.dtype.kind not in "uif" or x.ndim not in (3, 4):
            raise ReprolibError(f"{where}: {split}_images must be a numeric array of shape "
                                f"(N, H, W[, C]) or (N, C, H, W), got dtype {x.dtype}, shape "
                                f"{x.shape}")
        if len(x) == 0:
            raise ReprolibError(f"{where}: {split}_images is empty; a data set needs images "
                                "to train and test on")
        if 0 in x.shape[1:]:
            raise ReprolibError(f"{where}: {split}_images has shape {x.shape}: an image needs "
                                "a height, a width and channels of at least 1 each")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ReprolibError(f"{where}: {split}_images holds NaN or infinite values")
        y = arr[f"{split}_labels"] = _labels(y, f"{split}_labels", where)
        if len(x) != len(y):
            raise ReprolibError(f"{where}: {split}_images holds {len(x)} images but "
                                f"{split}_labels {len(y)} labels; they must agree")
    ytr, yte = arr["train_labels"], arr["test_labels"]
    if "classes" in z.files:
        names = np.atleast_1d(_npz_array(z, "classes", where))
        if names.ndim != 1:
            raise ReprolibError(f"{where}: classes must be one name per class (shape (K,)), "
                                f"got shape {names.shape}")
        if len(names) > MAX_CLASSES:
            raise ReprolibError(f"{where}: classes names {len(names):,} classes, more than "
                                f"{MAX_CLASSES:,} (reprolib.data.MAX_CLASSES); a classes array "
                                "names each class once")
        classes = [str(c) for c in names]
        if not classes:
            raise ReprolibError(f"{where}: classes is empty")
        source = f"its classes array names {len(classes)}"
    else:
        k = int(ytr.max()) + 1
        if k > len(ytr):
            raise ReprolibError(f"{where}: train_labels holds the label {k - 1} but there are "
                                f"only {len(ytr)} training images; labels are class indices "
                                "0..K-1 (add a `classes` array naming the K classes)")
        classes = [str(i) for i in range(k)]
        source = f"its training labels give {k}"
    for key, y in (("train_labels", ytr), ("test_labels", yte)):
        if int(y.max()) >= len(classes):
            raise ReprolibError(f"{where}: {key} holds the label {int(y.max())}, but {source} "
                                f"classes (labels 0..{len(classes) - 1})")
    return ArrayDataset(_nchw(arr["train_images"], f"{where}: train_images"), ytr,
                        _nchw(arr["test_images"], f"{where}: test_images"), yte, classes)


def load_cifar(name: str, root: str | os.PathLike | None = None,
               download: bool | None = None) -> ArrayDataset:
    """CIFAR-10 / CIFAR-100 through torchvision, from ``root`` (default data/); downloaded
    there when missing and a download is allowed (:func:`may_download`)."""
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    base = root_dir(root)
    dl = may_download(root) if download is None else download
    sets = [_torchvision(cls, name, base, dl, train=t) for t in (True, False)]
    arr = [(_nchw(s.data, name), np.asarray(s.targets, dtype=np.int64)) for s in sets]
    return ArrayDataset(arr[0][0], arr[0][1], arr[1][0], arr[1][1], list(sets[0].classes))


def _subset_candidates() -> list[Path]:
    return [paths.ROOT.parent / "shared" / "data" / "cifar10_subset.npz",
            paths.data_root() / "cifar10_subset.npz"]


def cifar10_subset_file(root=None, build: bool = True, download: bool | None = None) -> Path:
    """The ``.npz`` of the ``cifar10_subset`` data set.

    Looked for, in order: the file named by ``REPROLIB_CIFAR10_SUBSET``; the copy beside the
    project (``../shared/data/cifar10_subset.npz``); the cached build ``data/cifar10_subset.npz``
    (``REPROLIB_DATA``).  When none exists and ``build`` is true it is built there once from
    torchvision's CIFAR-10 (read from, or downloaded into, ``root``, default ``data/``) by
    :func:`build_cifar10_subset`; otherwise a ``ReprolibError`` says how to get it.
    """
    env = os.environ.get("REPROLIB_CIFAR10_SUBSET")
    if env:
        p = paths.resolve(env)
        if not p.is_file():
            raise ReprolibError(f"REPROLIB_CIFAR10_SUBSET={env} is not a file (resolved to "
                                f"{p}); unset it to use or build the default copy")
        return p
    for p in _subset_candidates():
        if p.exists():
            return p
    out = paths.data_root() / "cifar10_subset.npz"
    if not build:
        raise ReprolibError(
            f"data set cifar10_subset is not built yet (looked for {_subset_candidates()[0]} "
            f"and {out}): it is made once from CIFAR-10, found in or downloaded into "
            f"{root_dir(root)} (--data-root DIR holding cifar-10-batches-py, --download), or "
            "set REPROLIB_CIFAR10_SUBSET to a copy of the file")
    from reprolib.core import io

    with io.file_lock(out):            # two processes building at once: one builds
        if out.exists():
            return out
        return build_cifar10_subset(root, out, per_batch=SUBSET_PER_BATCH, download=download)


def build_cifar10_subset(root, out, per_batch: int = SUBSET_PER_BATCH,
                         download: bool | None = True) -> Path:
    """Write ``out`` (.npz): the first ``per_batch`` images of each of CIFAR-10's five
    training batch files (in order, 5 x 1,017 = 5,085) and of its test batch (1,017), as
    uint8 HWC RGB with int64 labels and the class names -- the arrays of
    ``../shared/data/cifar10_subset.npz``.  CIFAR-10 comes from torchvision (read from ``root``,
    default ``data/``; downloaded there when ``download``, or, when ``download`` is None,
    where :func:`may_download` allows it)."""
    import torchvision

    base = root_dir(root)
    dl = may_download(root) if download is None else download
    tr = _torchvision(torchvision.datasets.CIFAR10, "cifar10", base, dl, train=True)
    te = _torchvision(torchvision.datasets.CIFAR10, "cifar10", base, dl, train=False)
    # torchvision concatenates data_batch_1..5 in order; each file holds len(train) / 5 images
    per_file = len(tr.targets) // len(tr.train_list)
    idx = np.concatenate([np.arange(b * per_file, b * per_file + per_batch)
                          for b in range(len(tr.train_list))])
    ytr, yte = np.asarray(tr.targets, np.int64), np.asarray(te.targets, np.int64)
    arrays = dict(train_images=tr.data[idx], train_labels=ytr[idx],
                  test_images=te.data[:per_batch], test_labels=yte[:per_batch],
                  classes=np.asarray(tr.classes))
    from reprolib.core import io

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    io.atomic_write(out, write)
    return Path(out)


# --------------------------------------------------------------------------- where data lives


def root_dir(root=None) -> Path:
    """The folder torchvision data sets live in: ``root`` (relative to the project root) or
    the project's ``data/`` (``REPROLIB_DATA``).  A path that exists but is not a folder is a
    ``ReprolibError`` naming the whole path."""
    base = paths.resolve(root) if root else paths.data_root()
    if base.exists() and not base.is_dir():
        raise ReprolibError(f"data root {base} is not a folder; pass --data-root (or "
                            "-p data_root=) a folder that holds the data set or may receive it")
    return base


def may_download(root=None) -> bool:
    """Whether a missing data set may be downloaded into ``root`` without being asked: yes
    into the project's own data folder (``data/`` or ``REPROLIB_DATA``, also any folder
    inside the project); elsewhere only with ``REPROLIB_DOWNLOAD=1`` (``--download``)."""
    if os.environ.get("REPROLIB_DOWNLOAD", "") not in ("", "0"):
        return True
    base = root_dir(root).resolve()
    return base == paths.data_root().resolve() or base.is_relative_to(paths.ROOT.resolve())


def download_timeout() -> float:
    """Seconds a download may wait for the server before giving up (REPROLIB_DOWNLOAD_TIMEOUT,
    default 60)."""
    try:
        t = float(os.environ.get("REPROLIB_DOWNLOAD_TIMEOUT", "60"))
    except ValueError:
        raise ReprolibError("REPROLIB_DOWNLOAD_TIMEOUT must be a number of seconds, got "
                            f"{os.environ['REPROLIB_DOWNLOAD_TIMEOUT']!r}") from None
    return t if t > 0 else 60.0


@contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _torchvision(cls, name: str, root: Path, download: bool, **kw):
    """A torchvision data set from ``root``; a missing / corrupt / undownloadable one is one
    ``ReprolibError`` with the whole path and what to do."""
    try:
        with _socket_timeout(download_timeout()):
            return cls(str(root), download=download, **kw)
    except (RuntimeError, OSError) as e:  # torchvision: "not found or corrupted"; URLError
        if not download:
            raise ReprolibError(
                f"data set {name} is not under {root} (no download: that folder is outside "
                f"the project); pass --download (or set REPROLIB_DOWNLOAD=1) to download it "
                f"there, or --data-root DIR (-p data_root=DIR) where it is") from None
        text = str(e).splitlines()[0][:120] if str(e) else ""
        why = (f"the server did not answer within {download_timeout():g} s "
               "(REPROLIB_DOWNLOAD_TIMEOUT)" if isinstance(e, TimeoutError)
               or "timed out" in text else f"{type(e).__name__}: {text}")
        raise ReprolibError(
            f"data set {name} is missing under {root} and could not be downloaded ({why}); "
            f"download it on a machine with internet into that folder (see data/README.md), "
            f"or pass --data-root DIR (-p data_root=DIR) where it is") from None


def _array_dataset(name: str, image_size: int, root) -> ArrayDataset:
    if name == "digits":
        return load_digits(32 if image_size >= 32 else image_size)
    if name.startswith("npz:"):
        return load_npz(name[4:])
    if name == "cifar10_subset":
        return load_npz(cifar10_subset_file(root))
    return load_cifar(name, root)


def is_present(dataset: str, root=None) -> bool:
    """Whether ``dataset`` is on disk (nothing to download or build); reads no image."""
    check_dataset(dataset)
    if dataset == "digits" or dataset.startswith("npz:"):
        return True
    if dataset == "cifar10_subset":
        try:
            cifar10_subset_file(build=False)
            return True
        except ReprolibError:
            return False
    if dataset == "imagenet":
        return root is not None and all((paths.resolve(root) / s).is_dir()
                                        for s in ("train", "val"))
    base = root_dir(root)
    return all((base / f).exists() for f in _ON_DISK[dataset])


def prepare_data(dataset: str, root=None, *, download: bool | None = None) -> str:
    """Make sure ``dataset`` can be read before any work starts; returns a one-line note of
    what was done.

    An ``.npz`` (``npz:PATH``, ``cifar10_subset``) is read and checked (:func:`load_npz`).  A
    torchvision data set must be in ``root`` (default ``data/``); when it is not, it is
    downloaded now -- into the project's data folder by default, into any other folder only
    when ``download`` is true -- and ``cifar10_subset`` is built from CIFAR-10.  Anything
    missing that may not or cannot be fetched is one ``ReprolibError`` naming the whole path
    and the options.  Nothing is created outside the project unless ``download`` is true.
    """
    check_dataset(dataset)
    if download:
        os.environ["REPROLIB_DOWNLOAD"] = "1"   # the notebook's kernel inherits it

    def root_exists():
        base = root_dir(root)
        if root is not None and not base.exists() and not may_download(root):
            raise ReprolibError(f"data root {base} does not exist; pass --data-root (or "
                                f"-p data_root=) the folder that holds {dataset}, or add "
                                f"--download to download it there")
        return base

    if dataset == "digits":
        return "digits: bundled with scikit-learn"
    if dataset.startswith("npz:"):
        load_npz(dataset[4:])
        return f"{dataset}: checked"
    if dataset == "imagenet":
        if root is None:
            raise ReprolibError("data set imagenet needs a folder: pass --data-root "
                                "/path/to/imagenet (-p data_root=...) holding train/ and val/ "
                                "class folders")
        base = paths.resolve(root)
        for split in ("train", "val"):
            if not (base / split).is_dir():
                raise ReprolibError(f"data set imagenet: {base / split} is not a folder; the "
                                    "data root must hold train/ and val/ class folders")
        return f"imagenet: {base}"
    if dataset == "cifar10_subset":
        present = is_present(dataset)
        if not present:
            root_exists()
            if not (may_download(root) or is_present("cifar10", root)):
                cifar10_subset_file(root, build=False)       # raises, naming the options
        try:
            f = cifar10_subset_file(root, download=None)
        except ReprolibError as e:
            raise ReprolibError(f"data set cifar10_subset is built from CIFAR-10, and {e}; or "
                                "set REPROLIB_CIFAR10_SUBSET to a copy of cifar10_subset.npz"
                                ) from None
        load_npz(f)
        return f"cifar10_subset: {'found' if present else 'built'} at {f}"
    if dataset in DETECTION_DATASETS:      # COCO's layout checked, or the generated set
        from reprolib.data.coco import coco_root

        return f"{dataset}: {coco_root(dataset, root)}"
    base = root_exists()
    if is_present(dataset, root):
        return f"{dataset}: {base}"
    if not may_download(root):
        raise ReprolibError(
            f"data set {dataset} is not under {base} (looked for {base / _ON_DISK[dataset][0]}); "
            f"pass --download to download it there (~{_DOWNLOAD_MB[dataset]} MB), or "
            f"--data-root DIR (-p data_root=DIR) where it is")
    print(f"downloading {dataset} (~{_DOWNLOAD_MB[dataset]} MB) into {base} ...", flush=True)
    import torchvision

    from reprolib.core import io

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100,
           "flowers102": torchvision.datasets.Flowers102}[dataset]
    with io.file_lock(base / f".{dataset}"):   # one download per data set at a time
        if dataset == "flowers102":
            _torchvision(cls, dataset, base, True, split="test")
        else:
            _torchvision(cls, dataset, base, True, train=False)
    return f"{dataset}: downloaded into {base}"
