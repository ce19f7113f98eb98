"""IDX reading: valid files round-trip; every kind of damage is one DataError naming the file."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest
import torch

from aelightning.data.idx import (
    IDX_FILES,
    find_idx_files,
    load_idx_dataset,
    read_idx,
    write_idx,
)
from aelightning.errors import DataError

from .conftest import write_idx_set


@pytest.fixture(scope="module")
def digits(mnist_sample) -> torch.Tensor:
    """Twelve real digits, uint8 [12, 28, 28]."""
    return mnist_sample[0][::400].squeeze(1).contiguous()


@pytest.mark.parametrize("name", ["digits-idx3-ubyte", "digits-idx3-ubyte.gz"])
def test_roundtrip_raw_and_gz(tmp_path: Path, digits: torch.Tensor, name: str) -> None:
    path = write_idx(tmp_path / name, digits)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == torch.uint8
    assert torch.equal(back, digits)


def test_gzip_detected_by_magic_not_suffix(tmp_path: Path, digits: torch.Tensor) -> None:
    gz = write_idx(tmp_path / "a.gz", digits)
    no_suffix = tmp_path / "gzipped-without-suffix"
    shutil.copy(gz, no_suffix)
    raw_named_gz = tmp_path / "raw-named.gz"
    raw_named_gz.write_bytes(write_idx(tmp_path / "raw", digits).read_bytes())
    assert torch.equal(read_idx(no_suffix), digits)
    assert torch.equal(read_idx(raw_named_gz), digits)


def test_labels_1d_roundtrip(tmp_path: Path, mnist_sample) -> None:
    labels = mnist_sample[1][::50].to(torch.uint8)
    assert torch.equal(read_idx(write_idx(tmp_path / "l.gz", labels)), labels)


def _valid_bytes(tmp_path: Path, digits: torch.Tensor) -> bytes:
    return write_idx(tmp_path / "valid", digits).read_bytes()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic(tmp_path: Path, digits: torch.Tensor, gz: bool) -> None:
    data = b"\x01\x02" + _valid_bytes(tmp_path, digits)[2:]
    path = tmp_path / ("bad.gz" if gz else "bad")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=r"'.*bad(\.gz)?' is not an IDX file"):
        read_idx(path)


def test_wrong_type_code(tmp_path: Path, digits: torch.Tensor) -> None:
    floats = digits.float().numpy().astype(">f4").tobytes()
    header = bytes([0, 0, 0x0D, 3]) + struct.pack(">3i", *digits.shape)
    path = tmp_path / "floats-idx3"
    path.write_bytes(header + floats)
    with pytest.raises(DataError, match=r"type 0x0d \(float32\)") as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("ndim", [0, 5])
def test_bad_ndim(tmp_path: Path, ndim: int) -> None:
    path = tmp_path / "dims"
    path.write_bytes(bytes([0, 0, 8, ndim]) + struct.pack(f">{ndim}i", *([1] * ndim)) + b"\0")
    with pytest.raises(DataError, match=f"declares {ndim} dimensions"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path: Path, digits: torch.Tensor, gz: bool) -> None:
    data = _valid_bytes(tmp_path, digits)[:-100]
    path = tmp_path / ("short.gz" if gz else "short")
    path.write_bytes(gzip.compress(data) if gz else data)
    expected = digits.numel()
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    assert f"{expected} payload bytes but only {expected - 100}" in str(err.value)
    assert str(path) in str(err.value)


def test_truncated_header(tmp_path: Path, digits: torch.Tensor) -> None:
    path = tmp_path / "head"
    path.write_bytes(_valid_bytes(tmp_path, digits)[:9])
    with pytest.raises(DataError, match="truncated inside its header"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path: Path, digits: torch.Tensor, gz: bool) -> None:
    data = _valid_bytes(tmp_path, digits) + b"\0" * 7
    path = tmp_path / ("long.gz" if gz else "long")
    path.write_bytes(gzip.compress(data) if gz else data)
    expected = digits.numel()
    with pytest.raises(DataError, match="trailing bytes") as err:
        read_idx(path)
    assert f"{expected} payload bytes but {expected + 7} are present" in str(err.value)


def test_truncated_gzip_stream(tmp_path: Path, digits: torch.Tensor) -> None:
    gz = write_idx(tmp_path / "d.gz", digits).read_bytes()
    path = tmp_path / "cut.gz"
    path.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(DataError, match="gzip stream is corrupt or cut short") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_corrupt_gzip_stream(tmp_path: Path, digits: torch.Tensor) -> None:
    gz = bytearray(write_idx(tmp_path / "d.gz", digits).read_bytes())
    for i in range(30, len(gz) - 30, 97):  # scramble the deflate data, keep the gzip header
        gz[i] ^= 0xFF
    path = tmp_path / "scrambled.gz"
    path.write_bytes(bytes(gz))
    with pytest.raises(DataError, match="corrupt or cut short") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_write_idx_rejects_non_uint8(tmp_path: Path, digits: torch.Tensor) -> None:
    with pytest.raises(DataError, match="needs a uint8 tensor"):
        write_idx(tmp_path / "f", digits.float())


def test_load_idx_dataset(idx_gz) -> None:
    files = find_idx_files(idx_gz.root, "MNIST")
    train_x, train_y, test_x, test_y = load_idx_dataset(files)
    assert train_x.shape == (4000, 1, 28, 28) and train_x.dtype == torch.uint8
    assert train_y.dtype == torch.int64 and test_y.dtype == torch.int64
    assert torch.equal(train_x, idx_gz.train_x) and torch.equal(train_y, idx_gz.train_y)
    assert torch.equal(test_x, idx_gz.test_x) and torch.equal(test_y, idx_gz.test_y)


def test_label_image_count_mismatch(tmp_path: Path, sample_split) -> None:
    train_x, train_y, test_x, test_y = sample_split
    files = write_idx_set(tmp_path, (train_x, train_y[:-3], test_x, test_y), gz=False)
    with pytest.raises(DataError) as err:
        load_idx_dataset(files)
    msg = str(err.value)
    assert "4000 images" in msg and "3997 labels" in msg
    assert str(files["train_images"]) in msg and str(files["train_labels"]) in msg


def test_label_out_of_range(tmp_path: Path, sample_split) -> None:
    train_x, train_y, test_x, test_y = sample_split
    bad = test_y.clone()
    bad[0] = 10
    files = write_idx_set(tmp_path, (train_x, train_y, test_x, bad), gz=False)
    with pytest.raises(DataError, match="contains label 10"):
        load_idx_dataset(files)


def test_swapped_image_and_label_files(tmp_path: Path, sample_split) -> None:
    files = write_idx_set(tmp_path, sample_split, gz=False)
    files["train_images"], files["train_labels"] = files["train_labels"], files["train_images"]
    with pytest.raises(DataError, match="must be \\[N, H, W\\]"):
        load_idx_dataset(files)


# -- finding files ---------------------------------------------------------------------------
def _touch_set(folder: Path, suffix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for base in IDX_FILES.values():
        (folder / f"{base}{suffix}").touch()


def test_find_torchvision_layout(idx_gz, idx_raw) -> None:
    for s in (idx_gz, idx_raw):
        files = find_idx_files(s.root, "MNIST")
        assert files is not None and set(files) == set(IDX_FILES)
        assert all(p.parent == s.root / "MNIST" / "raw" for p in files.values())


def test_find_flat_layout_like_debian(idx_flat) -> None:
    # dataset-fashion-mnist installs the four .gz files flat in /usr/share/datasets/fashion-mnist
    files = find_idx_files(idx_flat.root, "FashionMNIST")
    assert files is not None and all(p.parent == idx_flat.root for p in files.values())


def test_find_prefers_raw_over_gz(tmp_path: Path) -> None:
    _touch_set(tmp_path / "MNIST" / "raw", ".gz")
    _touch_set(tmp_path / "MNIST" / "raw", "")
    files = find_idx_files(tmp_path, "MNIST")
    assert files is not None and all(p.suffix != ".gz" for p in files.values())


def test_find_prefers_torchvision_raw_folder(tmp_path: Path) -> None:
    _touch_set(tmp_path, ".gz")
    _touch_set(tmp_path / "MNIST" / "raw", ".gz")
    files = find_idx_files(tmp_path, "MNIST")
    assert files is not None and files["train_images"].parent == tmp_path / "MNIST" / "raw"


def test_find_lowercase_alias_folder(tmp_path: Path) -> None:
    _touch_set(tmp_path / "fashion-mnist", ".gz")  # data_dir=/usr/share/datasets works too
    files = find_idx_files(tmp_path, "FashionMNIST")
    assert files is not None and files["test_labels"].parent == tmp_path / "fashion-mnist"


def test_find_incomplete_set_is_none(tmp_path: Path) -> None:
    _touch_set(tmp_path / "MNIST" / "raw", ".gz")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert find_idx_files(tmp_path, "MNIST") is None
    assert find_idx_files(tmp_path / "missing", "MNIST") is None
