"""MNIST through tensorflow-datasets, with an offline preparation from the IDX files.

The training pipeline reads MNIST with

    tfds.data_source("mnist", builder_kwargs={"file_format": "array_record"})

which needs no TensorFlow. The data must already be prepared in the TFDS data dir
(`config.data.data_dir`, else `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). If it
is not, and the four original IDX files are available in `config.data.raw_dir` or
`$JAXPOOL_MNIST_DIR` (raw or `.gz`), they are verified (md5 of the decompressed bytes,
IDX magic numbers and shapes) and written once into the same "mnist" TFDS dataset by
`LocalMNIST`, a subclass of TFDS's own MNIST builder that reads local files instead
of downloading. Without local files, TFDS downloads MNIST itself when the network is
reachable; otherwise `MnistDataError` says what to set, within seconds.

The preparation is atomic: it writes into a temporary folder inside the data dir
and renames the finished version folder into place, so a failure never leaves a
half-written dataset behind. It holds a lock on the data dir (flock), so that
concurrent runs prepare once; under that lock, temporary folders left by a run
that was killed while preparing are removed. A data dir that cannot be written
(full disk, read-only) gives a `MnistDataError` naming it and the cause, and so
does a prepared copy that cannot be read (corrupt or incomplete files): that one
names the folder to delete so that the next run prepares it again.

With `config.data.loader = "idx"` the IDX files are read directly instead, without
TFDS (for machines that have the files but not tensorflow-datasets).

`load(data_config)` returns both splits as numpy uint8 images `(N, 28, 28, 1)` and
int32 labels `(N,)`; the trainer puts them on the device once and scales them to
[0, 1] on the fly.

Example:

    >>> import ml_collections
    >>> cfg = ml_collections.ConfigDict(dict(name="mnist", data_dir=None,
    ...     raw_dir="/path/to/mnist_idx", mock=False, mock_num_examples=0))
    >>> splits = load(cfg)                      # doctest: +SKIP
    >>> splits["train"].images.shape            # doctest: +SKIP
    (60000, 28, 28, 1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import gzip
import hashlib
import io
import os
import shutil
import socket
import tempfile
import urllib.parse
from typing import Any

import numpy as np

# Environment variable naming a folder with the four MNIST IDX files.
RAW_DIR_ENV = "JAXPOOL_MNIST_DIR"
# config.data.loader: through TFDS (prepared once from the IDX files), or the IDX
# files read directly (same examples; TFDS stores them in a shuffled order).
LOADERS = ("tfds", "idx")
# Prefix of the temporary folders of a preparation inside the data dir.
TMP_PREFIX = ".jaxpool-mnist-"

# The original MNIST release: file stem -> (IDX magic number, shape after the count,
# md5 of the decompressed file, number of examples).
IDX_FILES = {
  "train-images-idx3-ubyte": (2051, (28, 28), "6bbc9ace898e44ae57da46a324031adb", 60000),
  "train-labels-idx1-ubyte": (2049, (), "a25bea736e30d166cdddb491f175f624", 60000),
  "t10k-images-idx3-ubyte": (2051, (28, 28), "2646ac647ad5339dbf082846283269ea", 10000),
  "t10k-labels-idx1-ubyte": (2049, (), "27ae3e4e09519cfbb04c329615203637", 10000),
}
_SPLIT_FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MnistDataError(RuntimeError):
  """MNIST is neither prepared nor preparable (missing, corrupt or unreachable)."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One split in host memory: `images` uint8 `(N, 28, 28, 1)`, `labels` int32 `(N,)`."""

  images: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])


# --------------------------------------------------------------------------- IDX files


def find_idx_file(raw_dir: str, stem: str) -> str:
  """The path of `stem` or `stem.gz` in `raw_dir`; `MnistDataError` naming it if absent."""
  for name in (stem, stem + ".gz"):
    path = os.path.join(raw_dir, name)
    if os.path.isfile(path):
      return path
  raise MnistDataError(
    f"MNIST file {stem!r} (or {stem + '.gz'!r}) is missing from raw_dir {raw_dir!r}; "
    f"expected the four files {sorted(IDX_FILES)}."
  )


def read_idx(path: str, stem: str, *, verify_md5: bool = True) -> np.ndarray:
  """Reads and verifies one IDX file (raw or gzip); returns its uint8 array.

  Checks, in order, each failure naming the file and what was expected: the gzip
  stream, the md5 of the decompressed bytes (skipped with `verify_md5=False`, for
  hand-made test files), the magic number, the image size, and that the file
  holds exactly as many bytes as its header announces.

  Returns `(N, 28, 28)` for image files and `(N,)` for label files.
  """
  magic, shape, md5, _ = IDX_FILES[stem]
  try:
    with open(path, "rb") as f:
      data = f.read()
    if path.endswith(".gz"):
      data = gzip.decompress(data)
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise MnistDataError(f"MNIST file {path!r} cannot be read or decompressed: {e}") from e
  if verify_md5:
    got = hashlib.md5(data).hexdigest()
    if got != md5:
      raise MnistDataError(
        f"MNIST file {path!r} has md5 {got} (of the decompressed bytes), expected "
        f"{md5}: the file is corrupt or not the original {stem}."
      )
  header_len = 4 * (2 + len(shape))
  if len(data) < header_len:
    raise MnistDataError(
      f"MNIST file {path!r} is truncated: {len(data)} bytes, shorter than the "
      f"{header_len}-byte IDX header of {stem}."
    )
  header = np.frombuffer(data[:header_len], dtype=">u4")
  if int(header[0]) != magic:
    raise MnistDataError(
      f"MNIST file {path!r} has IDX magic number {int(header[0])}, expected {magic} "
      f"({'images' if shape else 'labels'} file {stem})."
    )
  count, dims = int(header[1]), tuple(int(d) for d in header[2:])
  if dims != shape:
    raise MnistDataError(f"MNIST file {path!r} declares items of shape {dims}, expected {shape}.")
  expected_len = header_len + count * int(np.prod(shape, dtype=np.int64))
  if len(data) != expected_len:
    raise MnistDataError(
      f"MNIST file {path!r} holds {len(data)} bytes, expected {expected_len} "
      f"(a {header_len}-byte header and {count} items of shape {shape}): "
      "truncated or garbled."
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape((count, *shape))


def read_raw_splits(raw_dir: str, *, verify_md5: bool = True) -> dict[str, Split]:
  """Reads and verifies the four IDX files of `raw_dir` into train and test `Split`s."""
  out = {}
  for split, (img_stem, lab_stem) in _SPLIT_FILES.items():
    images = read_idx(find_idx_file(raw_dir, img_stem), img_stem, verify_md5=verify_md5)
    labels = read_idx(find_idx_file(raw_dir, lab_stem), lab_stem, verify_md5=verify_md5)
    if len(images) != len(labels):
      raise MnistDataError(
        f"MNIST {split} split in {raw_dir!r}: {len(images)} images but "
        f"{len(labels)} labels; the files must come from the same release."
      )
    if labels.size and labels.max() > 9:
      raise MnistDataError(
        f"MNIST file {lab_stem} in {raw_dir!r} holds label {labels.max()}, expected labels 0..9."
      )
    out[split] = Split(images[..., None], labels.astype(np.int32))
  return out


# --------------------------------------------------------------------- TFDS builder


@functools.cache
def _local_builder_class():
  """`LocalMNIST`, created lazily so that importing this module stays cheap."""
  from PIL import Image
  from tensorflow_datasets.core import utils as tfds_utils
  from tensorflow_datasets.image_classification import mnist as tfds_mnist

  class LocalMNIST(tfds_mnist.MNIST, skip_registration=True):
    """TFDS's MNIST builder, reading already verified local IDX arrays.

    Same name, version, features and splits as `tfds.builder("mnist")`, so the
    prepared dataset is found by `tfds.data_source("mnist", ...)`. Images are
    PNG-encoded with PIL (TFDS would use TensorFlow, which is not needed here).
    """

    name = "mnist"

    @tfds_utils.classproperty
    @classmethod
    def url_infos(cls):
      # Nothing is downloaded, so there are no URL checksums to look up (the
      # lookup would resolve this module's resource path, needlessly).
      return None

    def __init__(self, *, splits: dict[str, Split], **kwargs):
      self._local_splits = splits
      super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
      del dl_manager  # Nothing to download.
      return {name: self._generate_examples(split=name) for name in self._local_splits}

    def _generate_examples(self, split):
      data = self._local_splits[split]
      for index in range(len(data)):
        buf = io.BytesIO()
        Image.fromarray(data.images[index, :, :, 0]).save(buf, format="png")
        yield index, {"image": buf.getvalue(), "label": int(data.labels[index])}

  return LocalMNIST


def default_data_dir(data_dir: str | None) -> str:
  """`data_dir`, else `$TFDS_DATA_DIR`, else TFDS's default (`~/tensorflow_datasets`)."""
  if data_dir:
    return os.path.expanduser(data_dir)
  import tensorflow_datasets as tfds

  return os.path.expanduser(tfds.core.constants.DATA_DIR)


def _version_dir(data_dir: str) -> str:
  from tensorflow_datasets.image_classification import mnist as tfds_mnist

  return os.path.join(data_dir, "mnist", str(tfds_mnist.MNIST.VERSION))


def is_prepared(data_dir: str) -> bool:
  """Whether the TFDS "mnist" dataset is fully prepared in `data_dir`."""
  return os.path.isfile(os.path.join(_version_dir(data_dir), "dataset_info.json"))


def prepare_offline(raw_dir: str, data_dir: str, *, verify_md5: bool = True) -> str:
  """Verifies the IDX files of `raw_dir` and prepares TFDS "mnist" in `data_dir`.

  Writes array_record files through `LocalMNIST` into a temporary folder inside
  `data_dir` and renames the finished version folder into
  `data_dir/mnist/<version>`; on any error nothing is left behind. A no-op when the
  dataset is already prepared (also when another process finished first).

  Returns the prepared version folder.
  """
  import tensorflow_datasets as tfds

  target = _version_dir(data_dir)
  if is_prepared(data_dir):
    return target
  splits = read_raw_splits(raw_dir, verify_md5=verify_md5)  # Fails before any write.
  try:
    os.makedirs(data_dir, exist_ok=True)
    with _preparation_lock(data_dir):
      if is_prepared(data_dir):  # Another process prepared it while we waited.
        return target
      _remove_stale_tmp_dirs(data_dir)
      tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=data_dir)
      try:
        builder = _local_builder_class()(splits=splits, data_dir=tmp, file_format="array_record")
        builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
          )
        )
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
          os.rename(_version_dir(tmp), target)
        except OSError:
          if not is_prepared(data_dir):  # Not a preparation that won (flock on NFS).
            raise
      finally:
        shutil.rmtree(tmp, ignore_errors=True)
  except Exception as e:  # pylint: disable=broad-except
    from experiments import cli  # pylint: disable=g-import-not-at-top

    cause = cli.disk_cause(e)
    if cause is None:
      raise
    raise MnistDataError(
      f"cannot prepare MNIST in the TFDS data dir {data_dir!r}: {cause} "
      f"({' '.join(str(e).split())[:300]}). Free space there or set $TFDS_DATA_DIR "
      "(or config.data.data_dir) to a writable folder."
    ) from e
  return target


@contextlib.contextmanager
def _preparation_lock(data_dir: str, blocking: bool = True):
  """An exclusive flock on the data dir itself (no lock file to leave behind); the
  kernel releases it when the process dies, however it dies. Yields whether it
  holds the lock (always, when blocking)."""
  fd = os.open(data_dir, os.O_RDONLY)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
      yield False
      return
    yield True
  finally:
    os.close(fd)


def remove_stale_tmp_dirs(data_dir: str) -> None:
  """Removes the temporary folders that killed preparations left in `data_dir`,
  unless a preparation is running now (then they may be its own)."""
  try:
    stale = [n for n in os.listdir(data_dir) if n.startswith(TMP_PREFIX)]
    if stale:
      with _preparation_lock(data_dir, blocking=False) as locked:
        if locked:
          _remove_stale_tmp_dirs(data_dir)
  except OSError:
    pass  # A data dir we cannot list or lock: leave it as it is.


def _remove_stale_tmp_dirs(data_dir: str) -> None:
  """Removes the temporary folders of preparations that were killed. Called under
  the lock: no preparation is running, so every such folder is stale."""
  for name in os.listdir(data_dir):
    path = os.path.join(data_dir, name)
    if name.startswith(TMP_PREFIX) and os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)


def network_reachable(timeout: float = 3.0) -> bool:
  """Whether the host that TFDS downloads MNIST from accepts a TCP connection."""
  from tensorflow_datasets.image_classification import mnist as tfds_mnist

  host = urllib.parse.urlparse(tfds_mnist.MNIST.URL).hostname
  try:
    with socket.create_connection((host, 443), timeout=timeout):
      return True
  except OSError:
    return False


# ---------------------------------------------------------------------------- loading


def _read_source(source, *, batched: bool) -> Split:
  n = len(source)
  if batched:  # One call per chunk is much faster than one per example.
    items = []
    for start in range(0, n, 10000):
      items.extend(source.__getitems__(list(range(start, min(n, start + 10000)))))
  else:  # tfds.testing.mock_data's source has no working __getitems__.
    items = [source[i] for i in range(n)]
  images = np.stack([np.asarray(item["image"], dtype=np.uint8) for item in items])
  labels = np.asarray([int(item["label"]) for item in items], dtype=np.int32)
  return Split(images.reshape(n, 28, 28, 1), labels)


@functools.lru_cache(maxsize=4)
def _load_cached(data_dir: str, raw_dir: str | None, verify_md5: bool) -> dict[str, Split]:
  import tensorflow_datasets as tfds

  remove_stale_tmp_dirs(data_dir)
  if not is_prepared(data_dir):
    if raw_dir:
      if not os.path.isdir(raw_dir):
        raise MnistDataError(
          f"MNIST raw_dir {raw_dir!r} is not a folder; it must hold the four "
          f"IDX files {sorted(IDX_FILES)} (raw or .gz)."
        )
      prepare_offline(raw_dir, data_dir, verify_md5=verify_md5)
    elif not network_reachable():
      raise MnistDataError(
        f"MNIST is not prepared in the TFDS data dir {data_dir!r} and the network "
        "is unreachable. Set $JAXPOOL_MNIST_DIR (or config.data.raw_dir) to a "
        f"folder with the four IDX files {sorted(IDX_FILES)} (raw or .gz), or set "
        "$TFDS_DATA_DIR (or config.data.data_dir) to a dir where MNIST is "
        "already prepared."
      )
  prepared = is_prepared(data_dir)
  try:
    sources = {
      split: tfds.data_source(
        "mnist",
        split=split,
        data_dir=data_dir,
        download=not prepared,
        builder_kwargs={"file_format": "array_record"},
      )
      for split in ("train", "test")
    }
    return {split: _read_source(src, batched=True) for split, src in sources.items()}
  except Exception as e:  # pylint: disable=broad-except
    if not prepared:  # TFDS's own download and preparation: its error says it all.
      raise
    # Riegeli/array_record's "Corrupted ... file", protobuf's ParseError, a PNG
    # that does not decode, a missing shard: the prepared copy is damaged.
    folder = _version_dir(data_dir)
    raise MnistDataError(
      f"the prepared MNIST in {folder!r} cannot be read, it is corrupt or incomplete "
      f"({type(e).__name__}: {' '.join(str(e).split())[:300]}). Delete {folder!r} and "
      "rerun: it is prepared again from the IDX files of $JAXPOOL_MNIST_DIR (or "
      "config.data.raw_dir), or downloaded."
    ) from e


@functools.lru_cache(maxsize=4)
def _read_raw_cached(raw_dir: str, verify_md5: bool) -> dict[str, Split]:
  if not os.path.isdir(raw_dir):
    raise MnistDataError(
      f"MNIST raw_dir {raw_dir!r} is not a folder; it must hold the four "
      f"IDX files {sorted(IDX_FILES)} (raw or .gz)."
    )
  return read_raw_splits(raw_dir, verify_md5=verify_md5)


def load(data_config: Any) -> dict[str, Split]:
  """Both MNIST splits, `{"train": Split, "test": Split}`, in host memory.

  Args:
    data_config: `config.data` with fields `name` ("mnist"), `data_dir` (TFDS
      data dir; None: `$TFDS_DATA_DIR` or TFDS's default), `raw_dir` (IDX files
      for the offline preparation; None: `$JAXPOOL_MNIST_DIR`), `mock` (True:
      random examples from `tfds.testing.mock_data`, for tests),
      `mock_num_examples`, and optionally `verify_md5` (default True; False only
      for hand-made test files) and `loader` ("tfds", the default, or "idx": the
      IDX files of `raw_dir` read directly, in their file order, without TFDS).

  Loaded once per process and data dir (cached): a sweep of runs reads it once.
  """
  if data_config.name != "mnist":
    raise ValueError(f"config.data.name={data_config.name!r}; only 'mnist' is supported.")
  loader = data_config.get("loader", "tfds")
  if loader not in LOADERS:
    raise ValueError(f"config.data.loader={loader!r}; valid loaders: {list(LOADERS)}.")
  if data_config.mock:
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=int(data_config.mock_num_examples)):
      return {
        split: _read_source(
          tfds.data_source("mnist", split=split, builder_kwargs={"file_format": "array_record"}),
          batched=False,
        )
        for split in ("train", "test")
      }
  raw_dir = data_config.raw_dir or os.environ.get(RAW_DIR_ENV) or None
  verify = bool(data_config.get("verify_md5", True))
  if loader == "idx":
    if not raw_dir:
      raise MnistDataError(
        "config.data.loader='idx' reads the four IDX files directly, but neither "
        f"config.data.raw_dir nor ${RAW_DIR_ENV} names their folder; set one to a "
        f"folder with {sorted(IDX_FILES)} (raw or .gz)."
      )
    return _read_raw_cached(os.path.expanduser(raw_dir), verify)
  return _load_cached(
    default_data_dir(data_config.data_dir), os.path.expanduser(raw_dir) if raw_dir else None, verify
  )
