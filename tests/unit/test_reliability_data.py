"""Crafted .npz data sets: each is refused by the check that runs before any stage
(``prepare_data`` -> ``load_npz``) with one ``ReprolibError`` naming the file and the problem,
never a traceback, a machine-sized allocation or silently altered data."""

import io
import struct
import zlib

import numpy as np
import pytest

from reprolib import data
from reprolib.errors import ReprolibError


def _arrays(**over):
    rng = np.random.default_rng(0)
    arrays = dict(train_images=rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8),
                  train_labels=np.arange(20) % 4,
                  test_images=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8),
                  test_labels=np.arange(6) % 4)
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def _npz(path, **over):
    np.savez(path, **_arrays(**over))
    return f"npz:{path}"


def _npy_header(shape, dtype) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": tuple(shape)})
    return f.getvalue()


def _zip_by_hand(path, members: dict) -> None:
    """A zip archive written byte by byte: ``members`` maps a name to ``(deflated bytes,
    crc32, uncompressed size)``, so a member may declare gigabytes it never had to hold."""
    out, central = bytearray(), bytearray()
    for name, (body, crc, size) in members.items():
        n = name.encode()
        offset = len(out)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), size,
                           len(n), 0) + n + body
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(body),
                               size, len(n), 0, 0, 0, 0, 0, offset) + n
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                       len(central), len(out), 0)
    path.write_bytes(bytes(out + central + eocd))


def _member(raw: bytes):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush(), zlib.crc32(raw), len(raw)


def _bomb_member(shape, block=1_024_000):
    """train_images of ``shape`` (uint8, all zeros) deflated without holding it: the npy
    header, then identical full-flush deflate blocks of ``block`` zero bytes each."""
    header = _npy_header(shape, np.uint8)
    total = int(np.prod(shape))
    assert total % block == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    zeros = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    body = head + zeros * (total // block) + c.flush()
    return body, 0, len(header) + total          # the crc is never reached: refused first


def _small_members(**over):
    members = {}
    for k, v in _arrays(**over).items():
        f = io.BytesIO()
        np.lib.format.write_array(f, np.asarray(v))
        members[f"{k}.npy"] = _member(f.getvalue())
    return members


def _no_array_reads(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("an array was read before the size check")

    monkeypatch.setattr(np, "load", refuse)
    monkeypatch.setattr(np.lib.format, "read_array", refuse)


def test_a_zip_bomb_is_refused_before_any_array_is_read(tmp_path, monkeypatch):
    """3 GB of zeros in a 3 MB file: the sizes come from the .npy headers in the zip, no
    array is decompressed; the limit (a fraction of the available memory) is named."""
    p = tmp_path / "bomb.npz"
    members = _small_members()
    members["train_images.npy"] = _bomb_member((1_000_000, 32, 32, 3))     # 3.07 GB
    members["train_labels.npy"] = _member(_npy_bytes(np.zeros(1_000_000, np.int64)))
    _zip_by_hand(p, members)
    assert p.stat().st_size < 5_000_000
    monkeypatch.setattr(data.sources, "NPZ_MAX_BYTES", 2**30, raising=False)
    _no_array_reads(monkeypatch)
    with pytest.raises(ReprolibError) as e:
        data.prepare_data(f"npz:{p}")
    msg = str(e.value)
    assert "bomb.npz" in msg and "2.9 GiB" in msg and "1.0 GiB" in msg, msg
    assert "train_images" in msg


def test_the_memory_limit_follows_the_machine(monkeypatch):
    monkeypatch.setattr(data.sources, "NPZ_MAX_BYTES", None, raising=False)
    limit = data.npz_byte_limit()
    assert 0 < limit <= data.available_memory()


def _npy_bytes(a) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, a)
    return f.getvalue()


def test_a_header_that_lies_about_its_size_is_corrupt(tmp_path, monkeypatch):
    """The .npy header says 30,720,000 bytes, the zip member holds 30: refused as corrupt
    before np.load would fail (or allocate) on it."""
    p = tmp_path / "liar.npz"
    members = _small_members()
    members["train_images.npy"] = _member(_npy_header((10_000, 32, 32, 3), np.float64)
                                          + bytes(30))
    _zip_by_hand(p, members)
    _no_array_reads(monkeypatch)
    with pytest.raises(ReprolibError) as e:
        data.prepare_data(f"npz:{p}")
    msg = str(e.value)
    assert "liar.npz" in msg and "train_images" in msg and "corrupt" in msg, msg


@pytest.mark.parametrize("shape", [(20, 0, 0, 3), (20, 8, 0, 3), (20, 0, 8), (20, 3, 0, 8)])
def test_zero_sized_images_are_refused(tmp_path, shape):
    spec = _npz(tmp_path / "d.npz", train_images=np.zeros(shape, np.uint8))
    with pytest.raises(ReprolibError) as e:
        data.prepare_data(spec)
    msg = str(e.value)
    assert "d.npz" in msg and "train_images" in msg and "at least 1" in msg, msg


@pytest.mark.parametrize("images, found", [
    (np.full((20, 8, 8, 3), 300, np.int64), "values from 300 to 300"),
    (np.full((20, 8, 8, 3), -5, np.int16), "values from -5 to -5"),
    (np.concatenate([np.zeros((10, 8, 8, 3)), np.full((10, 8, 8, 3), 256.5)]),
     "values from 0 to 256.5"),
    (np.full((20, 8, 8, 3), -0.5, np.float32), "values from -0.5 to -0.5"),
])
def test_pixel_values_outside_the_range_are_refused_not_clipped(tmp_path, images, found):
    spec = _npz(tmp_path / "d.npz", train_images=images)
    with pytest.raises(ReprolibError) as e:
        data.prepare_data(spec)
    msg = str(e.value)
    assert "d.npz" in msg and "train_images" in msg and found in msg and "0..255" in msg, msg


def test_pixel_values_in_range_are_kept(tmp_path):
    """Floats in [0, 1] are scaled by 255, floats and integers in [0, 255] are kept."""
    x01 = np.linspace(0, 1, 20 * 8 * 8 * 3).reshape(20, 8, 8, 3)
    a = data.load_npz(_npz(tmp_path / "a.npz", train_images=x01)[4:])
    assert a.train_images.max() == 255 and a.train_images.dtype == np.uint8
    x = np.arange(20 * 8 * 8 * 3).reshape(20, 8, 8, 3) % 256
    b = data.load_npz(_npz(tmp_path / "b.npz", train_images=x.astype(np.int32))[4:])
    assert np.array_equal(b.train_images, x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("labels, real", [
    (np.array([0] * 19 + [2**63 + 5], np.uint64), "9223372036854775813"),
    (np.array([0] * 19 + [1e20]), "1e+20"),
])
def test_labels_are_checked_in_their_own_dtype(tmp_path, labels, real):
    spec = _npz(tmp_path / "d.npz", train_labels=labels)
    with pytest.raises(ReprolibError) as e:
        data.prepare_data(spec)
    msg = str(e.value)
    assert "d.npz" in msg and "train_labels" in msg and real in msg, msg
    assert "-922337" not in msg


def test_a_huge_classes_array_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data.sources, "MAX_CLASSES", 100, raising=False)
    spec = _npz(tmp_path / "d.npz", classes=np.array([str(i) for i in range(101)]))
    with pytest.raises(ReprolibError) as e:
        data.prepare_data(spec)
    msg = str(e.value)
    assert "d.npz" in msg and "classes" in msg and "101" in msg and "100" in msg, msg


def test_a_two_dimensional_classes_array_is_refused(tmp_path):
    """Its rows would become class names like "['a' 'b']"."""
    spec = _npz(tmp_path / "d.npz", classes=np.array([["a"], ["b"], ["c"], ["d"]]))
    with pytest.raises(ReprolibError, match="d.npz: classes must be one name per class"):
        data.prepare_data(spec)


def test_a_single_npy_is_refused_without_reading_it(tmp_path, monkeypatch):
    p = tmp_path / "one.npz"
    np.save(p.with_suffix(".npy"), np.zeros((4, 8, 8, 3), np.uint8))
    p.with_suffix(".npy").rename(p)
    _no_array_reads(monkeypatch)
    with pytest.raises(ReprolibError, match="one.npz holds one array, not an .npz archive"):
        data.prepare_data(f"npz:{p}")


def test_a_member_that_is_not_an_npy_is_refused(tmp_path):
    """np.load hands back such a member as bytes (it had no .npy magic)."""
    members = _small_members()
    members["train_labels.npy"] = _member(b"not an array")
    _zip_by_hand(tmp_path / "raw.npz", members)
    with pytest.raises(ReprolibError, match="raw.npz: train_labels is not an .npy array"):
        data.prepare_data(f"npz:{tmp_path / 'raw.npz'}")


def test_a_good_archive_still_loads(tmp_path):
    d = data.load_npz(_npz(tmp_path / "d.npz")[4:])
    assert d.train_images.shape == (20, 3, 8, 8) and d.classes == ["0", "1", "2", "3"]
    c = data.load_npz(_npz(tmp_path / "c.npz", classes=np.array(list("abcd")))[4:])
    assert c.classes == ["a", "b", "c", "d"]
