"""experiments/data.py: offline preparation from hand-made IDX files, every data error,
mock data. Hand-made files are tiny (a few examples), so the md5 check is off for
them, except in the test that checks the md5 error itself."""

import gzip
import hashlib
import os
import struct
import time

import ml_collections
import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from experiments import data  # noqa: E402

STEMS = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
  """The IDX encoding, written from the format's definition (big-endian header)."""
  header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_idx_files(folder, sizes=(12, 6), gz=True, seed=0):
  """Writes the four MNIST files with random content; returns the arrays."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  arrays = {}
  for (split, (img, lab)), n in zip(STEMS.items(), sizes):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,), dtype=np.uint8)
    arrays[split] = (images, labels)
    for stem, arr, magic in ((img, images, 2051), (lab, labels, 2049)):
      raw = idx_bytes(arr, magic)
      if gz:
        with open(os.path.join(folder, stem + ".gz"), "wb") as f:
          f.write(gzip.compress(raw))
      else:
        with open(os.path.join(folder, stem), "wb") as f:
          f.write(raw)
  return arrays


def cfg(data_dir, raw_dir="", verify_md5=False):
  return ml_collections.ConfigDict(
    dict(
      name="mnist",
      data_dir=str(data_dir),
      raw_dir=str(raw_dir),
      verify_md5=verify_md5,
      mock=False,
      mock_num_examples=0,
    )
  )


def sort_split(split):
  """TFDS stores examples in a shuffled order: compare as sorted (image, label) sets."""
  keys = [split.images[i].tobytes() + bytes([split.labels[i]]) for i in range(len(split))]
  return sorted(keys)


@pytest.fixture(autouse=True)
def _clear_cache(monkeypatch):
  monkeypatch.delenv(data.RAW_DIR_ENV, raising=False)
  data._load_cached.cache_clear()
  yield
  data._load_cached.cache_clear()


@pytest.mark.parametrize("gz", [True, False])
def test_offline_preparation_round_trip(tmp_path, gz):
  raw, tfds_dir = tmp_path / "raw", tmp_path / "tfds"
  arrays = write_idx_files(raw, gz=gz)
  splits = data.load(cfg(tfds_dir, raw))
  for name, (images, labels) in arrays.items():
    got = splits[name]
    assert got.images.shape == (len(labels), 28, 28, 1) and got.images.dtype == np.uint8
    assert got.labels.dtype == np.int32
    want = data.Split(images[..., None], labels.astype(np.int32))
    assert sort_split(got) == sort_split(want)
  # The same "mnist" TFDS dataset, complete, and nothing temporary left behind.
  assert data.is_prepared(str(tfds_dir))
  assert sorted(os.listdir(tfds_dir)) == ["mnist"]
  # Prepared once: later loads need no raw files.
  data._load_cached.cache_clear()
  again = data.load(cfg(tfds_dir))
  assert sort_split(again["test"]) == sort_split(splits["test"])


def test_raw_dir_from_environment(tmp_path, monkeypatch):
  raw = tmp_path / "raw"
  write_idx_files(raw)
  monkeypatch.setenv(data.RAW_DIR_ENV, str(raw))
  assert len(data.load(cfg(tmp_path / "tfds"))["train"]) == 12


def test_no_data_no_network_says_what_to_set(tmp_path, monkeypatch):
  monkeypatch.setattr(data, "network_reachable", lambda timeout=3.0: False)
  start = time.monotonic()
  with pytest.raises(data.MnistDataError) as err:
    data.load(cfg(tmp_path / "tfds"))
  assert time.monotonic() - start < 10
  for what in ("JAXPOOL_MNIST_DIR", "raw_dir", "TFDS_DATA_DIR"):
    assert what in str(err.value)
  assert not (tmp_path / "tfds").exists() or not os.listdir(tmp_path / "tfds")


def _assert_clean(tfds_dir):
  assert not data.is_prepared(str(tfds_dir))
  leftovers = []
  for _root, _dirs, files in os.walk(tfds_dir):
    leftovers += files
  assert leftovers == [], leftovers


def test_missing_file_is_named(tmp_path):
  raw = tmp_path / "raw"
  write_idx_files(raw)
  os.remove(raw / "t10k-labels-idx1-ubyte.gz")
  with pytest.raises(data.MnistDataError, match="t10k-labels-idx1-ubyte"):
    data.load(cfg(tmp_path / "tfds", raw))
  _assert_clean(tmp_path / "tfds")


def test_wrong_md5_names_file_and_expected_md5(tmp_path):
  raw = tmp_path / "raw"
  write_idx_files(raw)
  with pytest.raises(data.MnistDataError) as err:
    data.load(cfg(tmp_path / "tfds", raw, verify_md5=True))
  msg = str(err.value)
  assert "train-images-idx3-ubyte" in msg
  assert "6bbc9ace898e44ae57da46a324031adb" in msg  # The original release's md5.
  # The md5 reported as found is the md5 of the decompressed bytes.
  with gzip.open(raw / "train-images-idx3-ubyte.gz") as f:
    assert hashlib.md5(f.read()).hexdigest() in msg
  _assert_clean(tmp_path / "tfds")


@pytest.mark.parametrize(
  "damage, expected",
  [
    (lambda b: b[:10], "truncated"),  # Shorter than the header.
    (lambda b: b[:-5], "expected"),  # Body shorter than announced.
    (lambda b: struct.pack(">I", 2049) + b[4:], "magic number 2049, expected 2051"),
    (lambda b: b[:8] + struct.pack(">II", 27, 28) + b[16:], "expected (28, 28)"),
  ],
)
def test_garbled_header_names_file_and_expectation(tmp_path, damage, expected):
  raw = tmp_path / "raw"
  write_idx_files(raw, gz=False)
  path = raw / "train-images-idx3-ubyte"
  path.write_bytes(damage(path.read_bytes()))
  with pytest.raises(data.MnistDataError) as err:
    data.load(cfg(tmp_path / "tfds", raw))
  assert "train-images-idx3-ubyte" in str(err.value)
  assert expected in str(err.value)
  _assert_clean(tmp_path / "tfds")


def test_bad_gzip_is_named(tmp_path):
  raw = tmp_path / "raw"
  write_idx_files(raw)
  (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not a gzip stream at all")
  with pytest.raises(data.MnistDataError, match="train-labels-idx1-ubyte"):
    data.load(cfg(tmp_path / "tfds", raw))
  _assert_clean(tmp_path / "tfds")


def test_failure_during_writing_leaves_nothing(tmp_path, monkeypatch):
  raw = tmp_path / "raw"
  write_idx_files(raw)
  cls = data._local_builder_class()

  def broken(self, split):
    yield 0, {"image": b"definitely not a png", "label": 0}
    raise OSError("disk full (simulated)")

  monkeypatch.setattr(cls, "_generate_examples", broken)
  with pytest.raises(OSError, match="disk full"):  # propagated as raised, not wrapped
    data.load(cfg(tmp_path / "tfds", raw))
  _assert_clean(tmp_path / "tfds")


def test_mock_data():
  c = cfg("", "")
  c.mock, c.mock_num_examples = True, 7
  splits = data.load(c)
  assert splits["train"].images.shape == (7, 28, 28, 1)
  assert splits["train"].labels.min() >= 0 and splits["train"].labels.max() <= 9
