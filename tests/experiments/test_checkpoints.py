"""experiments/checkpoints.py: a corrupt newest checkpoint is detected and moved aside,
the one before it restored; never corrupt state; a full or read-only disk is one
WorkdirError. The state is a small tree of random arrays (incompressible, so that
zeroed bytes inside a data file are read back without an error of orbax's own)."""

import errno
import glob
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint")

from experiments import checkpoints as ckpt  # noqa: E402

RNG = np.random.default_rng(0)
STATE = {
  "params": {"w": jnp.asarray(RNG.normal(size=(100, 200)), jnp.float32), "b": jnp.ones(7)},
  "opt_state": [jnp.asarray(RNG.normal(size=3000), jnp.float32), jnp.int32(5)],
}


def state_of(epoch):
  return jax.tree.map(lambda x: x + epoch, STATE)


def history_of(epoch):
  return [{"epoch": e, "test_error": 1.0 / e} for e in range(1, epoch + 1)]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
  """A workdir with intact checkpoints of epochs 1 and 2."""
  workdir = tmp_path_factory.mktemp("two")
  c = ckpt.Checkpoints(str(workdir / "checkpoints"), keep=2)
  for epoch in (1, 2):
    c.save(epoch, state_of(epoch), history_of(epoch))
  c.close()
  return workdir


def biggest_data_file(workdir, epoch):
  files = glob.glob(
    str(workdir / "checkpoints" / str(epoch) / "state" / "ocdbt.process_0" / "d" / "*")
  )
  return max(files, key=os.path.getsize)


def zero_4k(path):
  with open(path, "r+b") as f:
    f.seek(min(1024, os.path.getsize(path) - 4096))
    f.write(b"\0" * 4096)


def truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


# The faults of the issue, each applied to the newest checkpoint (epoch 2).
FAULTS = {
  "4 KiB of a data file zeroed": lambda w: zero_4k(biggest_data_file(w, 2)),
  "data file truncated": lambda w: truncate(biggest_data_file(w, 2)),
  "state/_METADATA truncated": lambda w: truncate(w / "checkpoints" / "2" / "state" / "_METADATA"),
  "manifest.ocdbt deleted": lambda w: os.remove(
    w / "checkpoints" / "2" / "state" / "manifest.ocdbt"
  ),
  "history/metadata truncated": lambda w: truncate(
    w / "checkpoints" / "2" / "history" / "metadata"
  ),
}


def assert_tree_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_intact_checkpoints_restore_the_newest(two_checkpoints, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints, workdir)
  c = ckpt.Checkpoints(str(workdir / "checkpoints"), keep=2)
  epoch, state, history = c.restore_latest(STATE)
  c.close()
  assert epoch == 2 and history == history_of(2)
  assert_tree_equal(state, state_of(2))
  assert not (workdir / ckpt.CORRUPT_DIR).exists()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_corrupt_newest_falls_back_to_the_one_before(fault, two_checkpoints, tmp_path, caplog):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints, workdir)
  FAULTS[fault](workdir)
  c = ckpt.Checkpoints(str(workdir / "checkpoints"), keep=2)
  epoch, state, history = c.restore_latest(STATE)
  assert epoch == 1 and history == history_of(1)
  assert_tree_equal(state, state_of(1))  # The intact state, bit for bit.
  # The bad one is out of orbax's way (and kept for a post-mortem), named in a warning.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1"]
  assert os.path.isdir(workdir / ckpt.CORRUPT_DIR / "2")
  warning = " ".join(r.getMessage() for r in caplog.records)
  assert f"{workdir / 'checkpoints' / '2'}, is corrupt" in warning
  # The run goes on: saving epoch 2 again works, and restores.
  c.save(2, state_of(2), history_of(2))
  assert c.restore_latest(STATE)[0] == 2
  c.close()


def test_zeroed_bytes_are_caught_by_the_checksum(two_checkpoints, tmp_path, caplog):
  """The data files are compressed, so where 4 KiB are zeroed decides whether orbax
  fails to read them or restores wrong values silently; the layout varies between
  runs. Every position must fall back to epoch 1, and at least one must be a silent
  restore that only the SHA-256 catches."""
  caught_by_checksum = 0
  for offset in (1024, 8192, 16384, 32768, 49152):
    workdir = tmp_path / f"w{offset}"
    shutil.copytree(two_checkpoints, workdir)
    path = biggest_data_file(workdir, 2)
    with open(path, "r+b") as f:
      f.seek(min(offset, os.path.getsize(path) - 4096))
      f.write(b"\0" * 4096)
    caplog.clear()
    c = ckpt.Checkpoints(str(workdir / "checkpoints"), keep=2)
    assert c.restore_latest(STATE)[0] == 1
    c.close()
    caught_by_checksum += "do not match the SHA-256 saved with it" in caplog.text
  assert caught_by_checksum >= 1


def test_every_checkpoint_corrupt_is_one_error_naming_them(two_checkpoints, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints, workdir)
  zero_4k(biggest_data_file(workdir, 1))
  truncate(workdir / "checkpoints" / "2" / "history" / "metadata")
  c = ckpt.Checkpoints(str(workdir / "checkpoints"), keep=2)
  with pytest.raises(ckpt.CheckpointError) as info:
    c.restore_latest(STATE)
  c.close()
  message = str(info.value)
  assert str(workdir / "checkpoints" / "2") in message
  assert str(workdir / "checkpoints" / "1") in message
  assert "\n" not in message
  # Nothing is left to resume: a rerun starts from scratch.
  c = ckpt.Checkpoints(str(workdir / "checkpoints"), keep=2)
  assert c.restore_latest(STATE) is None
  c.close()


def test_another_config_is_a_mismatch_not_a_corruption(two_checkpoints, tmp_path):
  workdir = tmp_path / "w"
  shutil.copytree(two_checkpoints, workdir)
  other = dict(STATE, params={"w": jnp.zeros((100, 100)), "b": jnp.ones(7)})
  c = ckpt.Checkpoints(str(workdir / "checkpoints"), keep=2)
  with pytest.raises(ValueError, match=r"\['params'\]\['w'\] is \(\[100, 200\], 'float32'\)"):
    c.restore_latest(other)
  c.close()
  assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]  # Nothing moved.


def test_full_disk_stops_before_writing(tmp_path, monkeypatch):
  c = ckpt.Checkpoints(str(tmp_path / "checkpoints"), keep=2)
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(ckpt.shutil, "disk_usage", lambda p: usage._replace(free=100_000))
  with pytest.raises(ckpt.WorkdirError) as info:
    c.save(1, state_of(1), history_of(1))
  c.close()
  message = str(info.value)
  assert f"in the workdir {tmp_path}: No space left on device" in message
  assert "the checkpoint of epoch 1" in message
  assert os.listdir(tmp_path / "checkpoints") == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_failed_write_is_one_workdir_error(tmp_path, monkeypatch, code):
  c = ckpt.Checkpoints(str(tmp_path / "checkpoints"), keep=2)

  def failing_save(*args, **kwargs):
    # As orbax reports it: tensorstore's text inside a ValueError, the OSError below.
    try:
      raise OSError(code, os.strerror(code))
    except OSError as e:
      raise ValueError(f"RESOURCE_EXHAUSTED: Error writing ...: {e}") from e

  monkeypatch.setattr(c.manager, "save", failing_save)
  with pytest.raises(ckpt.WorkdirError, match=f"workdir {tmp_path}: {os.strerror(code)}"):
    c.save(1, state_of(1), history_of(1))
  c.close()


def test_digest_sees_every_byte():
  d = ckpt.digest(STATE, history_of(1))
  assert d == ckpt.digest(jax.tree.map(jnp.copy, STATE), history_of(1))
  flipped = jax.tree.map(lambda x: x, STATE)
  w = np.array(flipped["params"]["w"])
  w.view(np.uint32)[17, 3] ^= 1  # One bit of one float.
  flipped["params"]["w"] = jnp.asarray(w)
  assert ckpt.digest(flipped, history_of(1)) != d
  assert ckpt.digest(STATE, history_of(2)) != d
