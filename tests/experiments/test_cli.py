"""The command lines of experiments/ refuse bad configs up front: one line on stderr
naming what is wrong and the valid choices, a non-zero exit, no traceback, within
seconds (experiments/cli.py)."""

import os
import subprocess
import sys
import time

import ml_collections
import pytest

from experiments import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_command(module, *args, tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  env["TFDS_DATA_DIR"] = str(tmp_path / "tfds")  # Nothing may be prepared or downloaded.
  start = time.monotonic()
  proc = subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  return proc, time.monotonic() - start


# (module, args, what the one line must say), as the reproducers wrote them.
REFUSALS = [
  (
    "compare",
    ["--config=configs/compare.py:quick,pools=max+maxx"],
    "config.pools.maxx: config.pool: unknown pool 'maxx'; did you mean 'max'? valid pools: ",
  ),
  (
    "compare",
    ["--config=configs/compare.py:quick", "--config.epoch=1"],
    "unknown config key 'epoch' in '--config.epoch=1'; did you mean 'base.num_epochs'? "
    "valid keys: arg, base.<key>,",
  ),
  (
    "train",
    ["--config=configs/mnist.py:quick", "--config.num_epoch=1"],
    "unknown config key 'num_epoch' in '--config.num_epoch=1'; did you mean 'num_epochs'? "
    "valid keys: batch_size,",
  ),
  (
    "train",
    ["--config=configs/mnist.py:quick", "--config.pool_options.window_shap=(3,3)"],
    "config.pool='max': unknown pool option 'window_shap'; did you mean 'window_shape'? "
    "options of 'max': window_shape, strides, padding,",
  ),
  (
    "train",
    ["--config=configs/mnist.py:quick,pool=lp", "--config.pool_options.pp=3"],
    "unknown pool option 'pp'; did you mean 'p'? options of 'lp':",
  ),
  (
    "train",
    ["--config=configs/mnist.py:quick", "--config.model=seed"],
    "config.model: unknown model 'seed'; did you mean 'seed_cnn'? valid models: seed_cnn, "
    "zeiler_fergus",
  ),
  (
    "train",
    ["--config=configs/mnist.py:quick,pool_options.window_shape=(30,30)"],
    "does not fit model 'seed_cnn': max_pool: the window",
  ),
  (
    "benchmark",
    ["--config=configs/benchmark.py:quick", "--config.repeat=3"],
    "unknown config key 'repeat' in '--config.repeat=3'; did you mean 'repeats'? valid keys:",
  ),
  (
    "benchmark",
    ["--config.repeat=3"],  # The default config file, loaded while flags are defined.
    "did you mean 'repeats'?",
  ),
  (
    "benchmark",
    ["--config=configs/benchmark.py:quick", "--config.pools=('max_pol',)"],
    "config.pools: unknown pool 'max_pol'; did you mean 'max_pool'?",
  ),
  (
    "compare",
    ["--config=configs/compare.py:quik"],
    "--config=configs/compare.py:quik: configs/compare.py: unknown flag 'quik' in 'quik'; "
    "did you mean 'quick'?",
  ),
]


@pytest.mark.parametrize("module,args,expected", REFUSALS, ids=lambda v: str(v)[:40])
def test_refusal_is_one_line(module, args, expected, tmp_path):
  workdir = tmp_path / "work"
  proc, seconds = run_command(module, *args, f"--workdir={workdir}", tmp_path=tmp_path)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(f"{module}: error: "), lines
  assert expected in lines[0], lines[0]
  assert "Traceback" not in proc.stderr + proc.stdout
  assert not workdir.exists()  # Refused before anything was written or trained.
  assert seconds < 120  # On 2 busy cores; a few seconds on a free one.


def test_workdir_that_cannot_be_written_is_one_line(tmp_path):
  """A workdir under a file (as a read-only or full disk, one line naming it and
  the cause; tests/experiments/test_train.py and test_checkpoints.py simulate those two)."""
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  arg = "mock,data.mock_num_examples=64,batch_size=32,eval_batch_size=32,num_epochs=1"
  proc, _ = run_command(
    "train", f"--config=configs/mnist.py:{arg}", f"--workdir={blocker / 'run'}", tmp_path=tmp_path
  )
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith(
    f"train: error: cannot write the run's files in the workdir {blocker / 'run'}: Not a directory"
  ), proc.stderr
  assert "Traceback" not in proc.stderr


def test_suggestions():
  assert cli.suggest("num_epoch", ["batch_size", "num_epochs"]) == "num_epochs"
  assert cli.suggest("epoch", ["base.num_epochs", "seeds"]) == "base.num_epochs"
  assert cli.suggest("zzz", ["max", "avg"]) is None
  schema = ml_collections.ConfigDict({"a": 1, "sub": {"window": 2}, "opts": {}})
  cli.check_keys(
    ml_collections.ConfigDict({"a": 2, "opts": {"x": 1}, "plugins": ()}),
    schema,
    open_paths=("opts",),
  )
  with pytest.raises(
    cli.ConfigError,
    match=r"unknown config key 'sub.windw'; did you mean 'sub.window'\? valid keys: sub.window$",
  ):
    cli.check_keys(ml_collections.ConfigDict({"sub": {"windw": 1}}), schema)
  with pytest.raises(
    cli.ConfigError, match=r"in '--config.b=1'; valid keys: a, opts.<key>, sub.<key>$"
  ):
    cli.check_override_args(["p", "--config.b=1"], schema)
  cli.check_override_args(
    ["p", "--config.opts.new=1", "--config.sub.window=3"], schema, open_paths=("opts",)
  )


def test_disk_cause_reads_the_chain():
  import errno

  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as e:
      raise ValueError("could not save") from e
  except ValueError as e:
    assert cli.disk_cause(e) == os.strerror(errno.ENOSPC)
  assert (
    cli.disk_cause(RuntimeError("write failed: Read-only file system")) == "Read-only file system"
  )
  assert cli.disk_cause(ValueError("bad")) is None


def test_train_quiets_library_info_lines(tmp_path):
  """A tiny training run logs its own lines, not orbax's INFO lines."""
  arg = "mock,data.mock_num_examples=64,batch_size=32,eval_batch_size=32,num_epochs=1"
  proc, _ = run_command(
    "train",
    f"--config=configs/mnist.py:{arg}",
    f"--workdir={tmp_path / 'run'}",
    "--quiet",
    "--config.pool_options.window_shape=(3,3)",
    tmp_path=tmp_path,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "orbax" not in proc.stderr
  assert "epoch 1:" in proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) < 15, proc.stderr
