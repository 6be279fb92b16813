"""experiments/gpu_study.py (the report of a study folder), the `data.loader="idx"` path
it runs on, and the shell script's argument checks. The probe itself trains networks: the CPU smoke
run `scripts/gpu_study.sh --tiny` covers it (minutes, so not here)."""

import gzip
import os
import struct
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from test_compare import FakeTrainer
from test_compare import study_config

from experiments import compare
from experiments import data as data_lib
from experiments import gpu_study

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_report_of_a_study_folder(tmp_path):
  config = study_config(pools=("max", "avg"), seeds=(0, 1, 2))
  config.paper_test_error = {"avg": 0.0083, "max": 0.0055}
  compare.run_study(config, str(tmp_path), quiet=True, command=["c"], train_fn=FakeTrainer())
  probe = {
    "start_s": 4.0,
    "software": {"backend": "cpu", "device_kind": "cpu"},
    "runs": [
      {
        "pool": "max",
        "epochs": 2,
        "wall_s": 9.0,
        "compile_s": 3.0,
        "epoch_seconds": [2.0, 2.5],
        "images_per_second": 100.0,
      }
    ],
  }
  text = gpu_study.report_markdown(
    str(tmp_path), probe=probe, run={"title": "T", "budget_s": 420, "epochs": 3}
  )
  table = text.split("## Set-up")[0]  # The main table; the probe's comes later.
  rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| `")}
  # The fake trainer's closed form (tests/experiments/test_compare.py): 0.01 * index + 0.002 * seed
  # + 0.02 / epoch, index 1 for max and 2 for avg; 3 epochs.
  errors = {
    p: [100 * (0.01 * i + 0.002 * s + 0.02 / 3) for s in (0, 1, 2)]
    for p, i in (("max", 1), ("avg", 2))
  }
  cols = [c.strip() for c in rows["`avg`"].split("|")[1:-1]]
  assert cols[1] == f"{np.mean(errors['avg']):.2f} ± {np.std(errors['avg'], ddof=1):.2f}"
  assert cols[2] == "3"
  assert cols[3] == " ".join(f"{e:.2f}" for e in errors["avg"])
  assert cols[4] == "0.83"
  # Every seed is 1 pp worse than max: the paired differences have no spread.
  assert cols[5] == "+1.00 [+1.00, +1.00] (n=3)"
  assert "(baseline)" in rows["`max`"] and "| 0.55 |" in rows["`max`"]
  assert text.startswith("# T\n")
  assert "| `max` | 2 | 9.0 | 3.0 | 2.25 | 100 |" in text
  assert "Budget for the whole script 420 s; epochs chosen 3" in text
  assert text.count("| completed |") == 6


def write_idx(folder, images_by_split):
  """The four IDX files from the format's definition: big-endian magic and sizes."""
  stems = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
  }
  os.makedirs(folder, exist_ok=True)
  for split, (images, labels) in images_by_split.items():
    img_stem, lab_stem = stems[split]
    for stem, arr, magic in ((img_stem, images, 2051), (lab_stem, labels, 2049)):
      header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape)
      with open(os.path.join(folder, stem + ".gz"), "wb") as f:
        f.write(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_idx_loader_reads_the_files_in_order_without_tfds(tmp_path, monkeypatch):
  rng = np.random.default_rng(1)
  arrays = {
    "train": (rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, (5,))),
    "test": (rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, (3,))),
  }
  write_idx(tmp_path / "raw", arrays)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # Any import of it fails.
  monkeypatch.setenv(data_lib.RAW_DIR_ENV, str(tmp_path / "raw"))
  cfg = ml_collections.ConfigDict(
    dict(name="mnist", data_dir="", raw_dir="", verify_md5=False, mock=False, loader="idx")
  )
  splits = data_lib.load(cfg)
  for split, (images, labels) in arrays.items():
    np.testing.assert_array_equal(splits[split].images[..., 0], images)
    np.testing.assert_array_equal(splits[split].labels, labels)
    assert splits[split].images.dtype == np.uint8 and splits[split].labels.dtype == np.int32
  monkeypatch.delenv(data_lib.RAW_DIR_ENV)
  with pytest.raises(data_lib.MnistDataError, match="loader='idx'.*JAXPOOL_MNIST_DIR"):
    data_lib.load(cfg)
  cfg.raw_dir = str(tmp_path / "nowhere")
  with pytest.raises(data_lib.MnistDataError, match="is not a folder"):
    data_lib.load(cfg)
  cfg.loader = "csv"
  with pytest.raises(
    ValueError, match=r"config.data.loader='csv'; valid loaders: \['tfds', 'idx'\]"
  ):
    data_lib.load(cfg)


def test_negative_max_test_examples_is_refused():
  train = pytest.importorskip("experiments.train")
  from configs import mnist  # pylint: disable=g-import-not-at-top

  c = mnist.get_config("max_test_examples=-1")
  with pytest.raises(ValueError, match=r"config.max_test_examples must be an int >= 0"):
    train.validate_config(c)


@pytest.mark.parametrize(
  ("args", "message"),
  [
    (["--seeds", "0"], "--seeds must be a positive integer, got '0'"),
    (["--budget", "ten"], "--budget must be a positive number of seconds, got 'ten'"),
    (["--dtype", "float16"], "--dtype must be float32 or bfloat16, got 'float16'"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
  ],
)
def test_script_refuses_bad_arguments_in_one_line(args, message):
  out = subprocess.run(
    ["bash", os.path.join(ROOT, "scripts", "gpu_study.sh"), *args],
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert out.returncode == 2
  assert out.stderr.strip() == f"gpu_study.sh: {message}" + (
    " (see --help)" if "unknown" in message else ""
  )


def test_preflight_runs_on_this_machine():
  """The GPU session's first step (`--mode=preflight`: a forward and loss of each
  pool, a checkpoint saved and restored, a TensorBoard scalar) runs end to end here,
  so that a renamed trainer or checkpoint API fails this test instead of the device
  run."""
  out = subprocess.run(
    [sys.executable, "-m", "experiments.gpu_study", "--mode=preflight", "--pools=max,stochastic"],
    capture_output=True,
    text=True,
    timeout=240,
    cwd=ROOT,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert "preflight checkpoints and tensorboard: ok" in out.stdout
  assert '"backend": "cpu"' in out.stdout
