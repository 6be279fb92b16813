"""experiments/data.py: offline preparation from hand-made IDX files, every data error,
mock data. Hand-made files are tiny (a few examples), so the md5 check is off for
them, except in the test that checks the md5 error itself."""

import errno
import gzip
import hashlib
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import ml_collections
import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")

from experiments import data  # noqa: E402
from experiments.data import Split  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


def _prepared_copy(tmp_path):
  """Hand-made IDX files prepared into tmp_path/tfds; returns (raw, tfds, arrays)."""
  raw, tfds_dir = tmp_path / "raw", tmp_path / "tfds"
  arrays = write_idx_files(raw)
  data.load(cfg(tfds_dir, raw))
  data._load_cached.cache_clear()
  return raw, tfds_dir, arrays


def _zero_middle(path):
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    f.write(b"\0" * 64)


def _garble(path):
  with open(path, "r+b") as f:
    f.seek(10)
    f.write(b"\x07garbage{{{")


@pytest.mark.parametrize(
  "damage",
  [
    lambda v: _zero_middle(next(v.glob("*train.array_record*"))),  # Riegeli hash mismatch.
    lambda v: os.truncate(next(v.glob("*test.array_record*")), 100),
    lambda v: _garble(v / "dataset_info.json"),  # JSON / protobuf parse error.
  ],
  ids=["zeroed_records", "truncated_records", "garbled_dataset_info"],
)
def test_corrupt_prepared_copy_names_the_folder_to_delete(tmp_path, damage):
  raw, tfds_dir, arrays = _prepared_copy(tmp_path)
  version_dir = data._version_dir(str(tfds_dir))
  damage(pathlib.Path(version_dir))
  with pytest.raises(data.MnistDataError) as info:
    data.load(cfg(tfds_dir, raw))
  message = str(info.value)
  assert f"the prepared MNIST in {version_dir!r} cannot be read" in message
  assert f"Delete {version_dir!r} and rerun" in message
  # Doing what it says prepares it again, with the original content.
  shutil.rmtree(version_dir)
  data._load_cached.cache_clear()
  splits = data.load(cfg(tfds_dir, raw))
  for split, (images, labels) in arrays.items():
    expected = Split(images[..., None], labels.astype(np.int32))
    assert sort_split(splits[split]) == sort_split(expected)


def test_stale_preparation_folders_are_removed(tmp_path):
  """A preparation killed mid-way leaves its temporary folder; the next load removes
  it, unless a preparation holds the data dir's lock right now."""
  raw, tfds_dir = tmp_path / "raw", tmp_path / "tfds"
  write_idx_files(raw)
  stale = tfds_dir / f"{data.TMP_PREFIX}killed" / "mnist" / "3.0.1"
  stale.mkdir(parents=True)
  (stale / "half-written.array_record").write_bytes(b"x" * 100)
  data.load(cfg(tfds_dir, raw))  # Prepares, removing the stale folder first.
  assert sorted(os.listdir(tfds_dir)) == ["mnist"]

  stale.mkdir(parents=True)
  with data._preparation_lock(str(tfds_dir)) as locked:  # "Another" preparation runs.
    assert locked
    data.remove_stale_tmp_dirs(str(tfds_dir))
    assert stale.is_dir()
  data._load_cached.cache_clear()
  data.load(cfg(tfds_dir, raw))  # Already prepared: the stale folder still goes.
  assert sorted(os.listdir(tfds_dir)) == ["mnist"]


def test_killed_preparation_leaves_nothing_after_the_next_run(tmp_path):
  """SIGKILL during the preparation (the `finally` never runs), then a new load."""
  raw, tfds_dir = tmp_path / "raw", tmp_path / "tfds"
  write_idx_files(raw)
  script = textwrap.dedent(f"""
    import time
    from experiments import data
    import ml_collections
    cls = data._local_builder_class()
    original = cls._generate_examples
    def slow(self, split):
      yield from original(self, split)
      print("writing", flush=True)
      time.sleep(600)
    cls._generate_examples = slow
    data.load(ml_collections.ConfigDict(dict(name="mnist", data_dir={str(tfds_dir)!r},
        raw_dir={str(raw)!r}, verify_md5=False, mock=False, mock_num_examples=0)))
  """)
  env = dict(os.environ, PYTHONPATH=REPO)
  proc = subprocess.Popen(
    [sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
  )
  try:
    for line in proc.stdout:  # TFDS prints its progress there too.
      if line.strip() == "writing":
        break
    assert [n for n in os.listdir(tfds_dir) if n.startswith(data.TMP_PREFIX)]
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  splits = data.load(cfg(tfds_dir, raw))
  assert len(splits["train"]) == 12
  assert sorted(os.listdir(tfds_dir)) == ["mnist"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_data_dir_that_cannot_be_written_is_named(tmp_path, monkeypatch, code):
  raw, tfds_dir = tmp_path / "raw", tmp_path / "tfds"
  write_idx_files(raw)
  cls = data._local_builder_class()

  def failing(self, *args, **kwargs):
    raise OSError(code, os.strerror(code))

  monkeypatch.setattr(cls, "download_and_prepare", failing)
  with pytest.raises(data.MnistDataError) as info:
    data.load(cfg(tfds_dir, raw))
  assert f"cannot prepare MNIST in the TFDS data dir {str(tfds_dir)!r}: {os.strerror(code)}" in str(
    info.value
  )
  _assert_clean(tfds_dir)
