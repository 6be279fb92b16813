"""experiments/train.py and configs/: end to end on mock data, determinism, resume after
SIGKILL, 4 fake devices vs 1, two processes through jax.distributed, config errors,
non-finite loss, and (when the real MNIST files are there) one real epoch >= 97%."""

import builtins
import errno
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("optax")
pytest.importorskip("orbax.checkpoint")
pytest.importorskip("tensorflow_datasets")

from configs import mnist  # noqa: E402
from configs import zeiler_fergus  # noqa: E402
from experiments import checkpoints as ckpt_lib  # noqa: E402
from experiments import data as data_lib  # noqa: E402
from experiments import train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METRIC_KEYS = ("epoch", "train_loss", "train_error", "test_loss", "test_error")
SUMMARY_KEYS = {
  "final_test_error",
  "best_test_error",
  "best_epoch",
  "final_train_error",
  "total_seconds",
  "seconds_per_epoch",
  "images_per_second",
  "num_params",
  "device_kind",
  "device_count",
  "backend",
  "jax_version",
  "flax_version",
  "pool",
  "model",
  "seed",
  "num_epochs",
  "platform",
  "completed",
}
# A tiny run: 96 mock examples, batch 32 (3 steps), 2 epochs.
TINY = "mock,data.mock_num_examples=96,batch_size=32,eval_batch_size=32,num_epochs=2,quiet=true"


def tiny_config(extra=""):
  return mnist.get_config(TINY + ("," + extra if extra else ""))


def metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def comparable(records):
  return [{k: r[k] for k in METRIC_KEYS} for r in records]


def run_cli(workdir, arg=TINY, extra_env=None, flags=(), wait=True):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", **(extra_env or {}))
  cmd = [
    sys.executable,
    "-m",
    "experiments.train",
    f"--config=configs/mnist.py:{arg}",
    f"--workdir={workdir}",
    "--quiet",
    *flags,
  ]
  proc = subprocess.Popen(
    cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )
  if not wait:
    return proc
  out, _ = proc.communicate(timeout=600)
  return proc.returncode, out


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  """One uninterrupted tiny run, in process; reused as the reference."""
  workdir = str(tmp_path_factory.mktemp("straight"))
  summary = train.train_and_evaluate(tiny_config(), workdir)
  return workdir, summary


def test_end_to_end_writes_every_artifact(straight_run):
  workdir, summary = straight_run
  assert SUMMARY_KEYS <= set(summary)
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f) == summary
  assert summary["completed"] is True and summary["num_epochs"] == 2
  assert summary["num_params"] == 693962 and summary["device_count"] == 1
  records = metrics(workdir)
  assert [r["epoch"] for r in records] == [1, 2]
  for r in records:
    for k in ("train_error", "test_error"):
      assert 0.0 <= r[k] <= 1.0
      # 96 examples: every error is a multiple of 1/96.
      assert abs(r[k] * 96 - round(r[k] * 96)) < 1e-4
    assert r["seconds"] > 0 and r["images_per_second"] > 0
  assert summary["final_test_error"] == records[-1]["test_error"]
  assert summary["best_test_error"] == min(r["test_error"] for r in records)
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["pool"] == "max"
  assert any(
    n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(workdir, "tensorboard"))
  )
  assert os.listdir(os.path.join(workdir, "checkpoints"))


def test_same_seed_same_result_and_rerun_resumes(straight_run, tmp_path):
  workdir, summary = straight_run
  again = train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert comparable(metrics(str(tmp_path))) == comparable(metrics(workdir))
  # Rerunning a complete workdir trains nothing more and keeps the metrics.
  before = metrics(str(tmp_path))
  train.train_and_evaluate(tiny_config(), str(tmp_path))
  assert metrics(str(tmp_path)) == before
  assert again["final_test_error"] == summary["final_test_error"]
  other = train.train_and_evaluate(tiny_config("seed=1,num_epochs=1"), str(tmp_path / "s1"))
  assert metrics(str(tmp_path / "s1"))[0]["train_loss"] != metrics(workdir)[0]["train_loss"]
  assert other["seed"] == 1


def test_resume_after_sigkill_matches_straight_run(tmp_path):
  arg = TINY.replace("num_epochs=2", "num_epochs=6").replace("=96", "=192")
  ref_dir, work = str(tmp_path / "ref"), str(tmp_path / "killed")
  code, out = run_cli(ref_dir, arg)
  assert code == 0, out
  proc = run_cli(work, arg, wait=False)
  deadline = time.monotonic() + 300
  ckpt = os.path.join(work, "checkpoints")
  while time.monotonic() < deadline and proc.poll() is None:
    if os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt)):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert not os.path.exists(os.path.join(work, "summary.json")), "run ended before the kill"
  code, out = run_cli(work, arg)
  assert code == 0, out
  assert comparable(metrics(work)) == comparable(metrics(ref_dir))  # Bitwise.
  with open(os.path.join(work, "summary.json")) as f:
    assert json.load(f)["completed"] is True


def test_corrupt_latest_checkpoint_resumes_from_the_one_before(straight_run, tmp_path):
  """4 KiB zeroed in a data file of the newest checkpoint (which orbax restores
  without complaint): the rerun detects it, moves it aside with a warning and
  retrains from the checkpoint before it, to the straight run's metrics."""
  straight_dir, straight = straight_run
  workdir = tmp_path / "w"
  shutil.copytree(straight_dir, workdir)
  data_files = glob.glob(
    str(workdir / "checkpoints" / "2" / "state" / "ocdbt.process_0" / "d" / "*")
  )
  with open(max(data_files, key=os.path.getsize), "r+b") as f:
    f.seek(1024)
    f.write(b"\0" * 4096)
  summary = train.train_and_evaluate(tiny_config(), str(workdir))
  assert comparable(metrics(str(workdir))) == comparable(metrics(straight_dir))
  assert summary["final_test_error"] == straight["final_test_error"]
  assert os.path.isdir(workdir / ckpt_lib.CORRUPT_DIR / "2")
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]


def test_full_disk_and_read_only_workdir_are_one_error(tmp_path, monkeypatch):
  workdir = tmp_path / "full"
  usage = shutil.disk_usage(tmp_path)
  with monkeypatch.context() as m:
    m.setattr(ckpt_lib.shutil, "disk_usage", lambda p: usage._replace(free=10_000))
    with pytest.raises(ckpt_lib.WorkdirError) as info:
      train.train_and_evaluate(tiny_config("num_epochs=1"), str(workdir))
  assert f"in the workdir {workdir}: No space left on device" in str(info.value)
  assert not glob.glob(str(workdir / "checkpoints" / "*"))  # orbax wrote nothing.

  read_only = tmp_path / "read_only"
  read_only.mkdir()
  if os.geteuid() != 0:
    os.chmod(read_only, 0o555)
    cause = os.strerror(errno.EACCES)
  else:  # root writes through any mode bits: the file system refuses instead.
    real_open = builtins.open

    def refusing_open(file, mode="r", *args, **kwargs):
      if str(file).startswith(str(read_only)) and any(c in mode for c in "wax+"):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
      return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    cause = os.strerror(errno.EROFS)
  with pytest.raises(ckpt_lib.WorkdirError) as info:
    train.train_and_evaluate(tiny_config("num_epochs=1"), str(read_only))
  assert f"in the workdir {read_only}: {cause}" in str(info.value)


def test_four_fake_devices_match_one_device(straight_run, tmp_path):
  workdir, _ = straight_run
  code, out = run_cli(
    str(tmp_path), extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  )
  assert code == 0, out
  with open(tmp_path / "summary.json") as f:
    assert json.load(f)["device_count"] == 4
  for a, b in zip(metrics(str(tmp_path)), metrics(workdir)):
    for k in ("train_loss", "test_loss"):
      assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5)
    for k in ("train_error", "test_error"):
      assert a[k] == pytest.approx(b[k], abs=1.5 / 96)  # At most one flip.
  # A global batch that the 4 devices cannot split is a clear error.
  code, out = run_cli(
    str(tmp_path / "bad"),
    arg=TINY + ",batch_size=30",
    extra_env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
  )
  assert code != 0 and "batch_size=30 is not divisible by the number of devices (4)" in out


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_through_jax_distributed(tmp_path):
  port = _free_port()
  procs = [
    run_cli(
      str(tmp_path),
      wait=False,
      flags=(
        "--config.distributed.enabled=true",
        f"--config.distributed.coordinator_address=localhost:{port}",
        "--config.distributed.num_processes=2",
        f"--config.distributed.process_id={i}",
      ),
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  with open(tmp_path / "summary.json") as f:
    summary = json.load(f)
  assert summary["completed"] and summary["device_count"] == 2
  assert summary["process_count"] == 2
  assert [r["epoch"] for r in metrics(str(tmp_path))] == [1, 2]


def test_config_errors(tmp_path):
  with pytest.raises(ValueError, match="valid keys"):
    mnist.get_config("no_such_key=1")
  with pytest.raises(ValueError, match="did you mean 'num_epochs'"):
    mnist.get_config("num_epoch=1")
  with pytest.raises(ValueError, match="valid flags"):
    mnist.get_config("fast_please")
  c = tiny_config()
  with c.unlocked():
    c.extra_field = 3
  with pytest.raises(ValueError, match=r"unknown config key 'extra_field'; valid keys: batch_size"):
    train.train_and_evaluate(c, str(tmp_path))
  c = tiny_config("pool=maxx")
  with pytest.raises(ValueError, match=r"unknown pool 'maxx'; did you mean 'max'\? .*avg, .*max"):
    train.train_and_evaluate(c, str(tmp_path))
  with pytest.raises(ValueError, match="valid optimizers: adam, sgd, adadelta"):
    train.train_and_evaluate(tiny_config("optimizer=rmsprop"), str(tmp_path))
  with pytest.raises(ValueError, match="unknown pool option 'window_shap'; did you mean"):
    train.validate_config(tiny_config("pool_options.window_shap=(3,3)"))
  # An option the pool takes, with a value that does not fit the 28x28 input.
  with pytest.raises(ValueError, match=r"does not fit model 'seed_cnn': max_pool: .*larger"):
    train.validate_config(tiny_config("pool_options.window_shape=(30,30)"))
  with pytest.raises(ValueError, match="not divisible by the number of devices \\(3\\)"):
    train._check_divisible(tiny_config(), 3)
  assert not os.path.exists(tmp_path / "summary.json")


def test_pool_options_from_the_config_arg():
  """`:pool_options.K=V` sets any option (a Python literal, commas inside brackets
  kept); validate_config accepts the pool's own options."""
  c = mnist.get_config(
    "pool=lp,pool_options.window_shape=(3,3),pool_options.strides=(2,2),"
    "pool_options.padding=SAME,pool_options.p=3"
  )
  assert c.pool_options.to_dict() == {
    "window_shape": (3, 3),
    "strides": (2, 2),
    "padding": "SAME",
    "p": 3,
  }
  train.validate_config(c)
  m = mnist.get_config("pool=mixed,pool_options.granularity=channel")
  assert m.pool_options.granularity == "channel"
  train.validate_config(m)
  assert mnist.split_arg("a=(1, 2),b='x,y',c") == ["a=(1, 2)", "b='x,y'", "c"]


def test_configs_and_arg_parsing():
  c = mnist.get_config("pool=avg,quick,gpu,learning_rate=0.01,data.raw_dir=/x")
  assert (c.pool, c.num_epochs, c.platform, c.learning_rate, c.data.raw_dir) == (
    "avg",
    1,
    "gpu",
    0.01,
    "/x",
  )
  z = zeiler_fergus.get_config("pool=stochastic")
  assert z.model == "zeiler_fergus" and tuple(z.pool_options.window_shape) == (3, 3)
  assert z.pool_options.padding == "SAME"


def test_steps_per_epoch_runs_several_shuffled_passes(tmp_path):
  # 96 examples, batch 32: 3 steps per pass; 7 steps take 224 examples (2 1/3 passes).
  summary = train.train_and_evaluate(tiny_config("num_epochs=1,steps_per_epoch=7"), str(tmp_path))
  record = metrics(str(tmp_path))[0]
  assert summary["completed"]
  assert abs(record["train_error"] * 224 - round(record["train_error"] * 224)) < 1e-4
  with pytest.raises(ValueError, match="steps_per_epoch must be an int >= 0"):
    train.train_and_evaluate(tiny_config("steps_per_epoch=-1"), str(tmp_path / "bad"))


def test_optimizers_build_and_train(tmp_path):
  for opt in ("sgd", "adadelta"):
    c = tiny_config(f"optimizer={opt},num_epochs=1,lr_schedule=cosine,weight_decay=0.001")
    s = train.train_and_evaluate(c, str(tmp_path / opt))
    assert s["completed"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  train.train_and_evaluate(tiny_config("num_epochs=1"), str(tmp_path))
  bad = tiny_config("num_epochs=2,learning_rate=1e30")
  with pytest.raises(FloatingPointError, match="epoch 2.*last good checkpoint \\(epoch 1\\)"):
    train.train_and_evaluate(bad, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]
  assert [r["epoch"] for r in metrics(str(tmp_path))] == [1]
  # A checkpoint that another model/optimizer wrote is a clear error, not a crash.
  with pytest.raises(ValueError, match="does not match"):
    train.train_and_evaluate(tiny_config("num_epochs=2,optimizer=sgd"), str(tmp_path))


def _real_mnist_dir():
  # $JAXPOOL_MNIST_DIR, else ../shared/data/mnist beside the checkout, as
  # scripts/compare.sh looks for it (where CI has the files).
  for candidate in (
    os.environ.get("JAXPOOL_MNIST_DIR", ""),
    os.path.join(REPO, "..", "shared", "data", "mnist"),
  ):
    if candidate and os.path.isdir(candidate):
      return os.path.abspath(candidate)
  return None


def test_one_real_epoch_reaches_97_percent(tmp_path):
  raw = _real_mnist_dir()
  if raw is None:
    pytest.skip(
      "real MNIST IDX files not found in ../shared/data/mnist (relative to the "
      "checkout); this CI check needs them"
    )
  c = mnist.get_config(
    f"num_epochs=1,quiet=true,data.raw_dir={raw},data.data_dir={tmp_path / 'tfds'}"
  )
  summary = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["final_test_error"] <= 0.03, summary
  data_lib._load_cached.cache_clear()


def test_random_pool_trains_reproducibly(tmp_path):
  from jaxpool import registry

  if "stochastic" not in registry.names():
    pytest.skip(
      "registry has no 'stochastic' pool on this branch yet (jaxpool.nnx "
      "StochasticPool lands with the modules branch)"
    )
  c = tiny_config("pool=stochastic,num_epochs=1")
  a = train.train_and_evaluate(c, str(tmp_path / "a"))
  b = train.train_and_evaluate(c, str(tmp_path / "b"))
  assert comparable(metrics(str(tmp_path / "a"))) == comparable(metrics(str(tmp_path / "b")))
  assert a["final_test_error"] == b["final_test_error"]
