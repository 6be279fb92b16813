"""A training run's checkpoints: orbax, one per epoch, verified when restored.

Each checkpoint is one orbax step (written atomically: a temporary folder renamed
into place) with three items:

- `state`: the arrays of the training state (a tree of plain dicts and lists);
- `history`: the metrics of every epoch so far (JSON);
- `integrity` (JSON): the layout of the state (path, shape and dtype of every
  array) and a SHA-256 over the state's bytes and the history.

`restore_latest` restores the newest checkpoint that is intact:

- a layout that differs from this run's state means the config changed (model,
  pool, optimizer): ValueError, use a new workdir (nothing is moved);
- an item that cannot be read (a truncated data file or `_METADATA`, a deleted
  `manifest.ocdbt`, a truncated `history/metadata`) or a checksum that does not
  match what was read (bytes zeroed inside a data file) means the checkpoint is
  corrupt: it is moved to `<workdir>/corrupt_checkpoints/<epoch>` with a warning
  naming it, and the next older checkpoint is tried. When none is intact,
  `CheckpointError` names every corrupt one. Corrupt state is never resumed.

Checkpoints written before the `integrity` item existed are restored unverified.

Before each save the free space of the checkpoint folder's disk is compared with
the size of the state, so that a full disk stops the run with one `WorkdirError`
(naming the folder and the cause) before orbax starts writing; a write that fails
anyway (read-only, permissions, a disk filled meanwhile) raises `WorkdirError` too.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import glob
import hashlib
import json
import os
import shutil
import sys
from typing import Any

import jax
import numpy as np
from absl import logging

from experiments import cli

INTEGRITY = "integrity"
CORRUPT_DIR = "corrupt_checkpoints"
# Room beyond the arrays' bytes: orbax's metadata, the history, the filesystem.
_SLACK_BYTES = 4 << 20


class CheckpointError(RuntimeError):
  """Every checkpoint of a workdir is corrupt: there is nothing safe to resume."""


class WorkdirError(OSError):
  """A run's folder cannot be written: full disk, read-only, no permission."""


def workdir_error(workdir: str, cause: str, what: str, error=None) -> WorkdirError:
  """`WorkdirError` naming the folder, the cause ("No space left on device") and
  what was being written."""
  detail = f" ({' '.join(str(error).split())[:300]})" if error is not None else ""
  return WorkdirError(f"cannot write {what} in the workdir {workdir}: {cause}{detail}")


def _host_leaves(tree) -> list[tuple[str, np.ndarray]]:
  """(path, host array) of every leaf, in a fixed order. The state is replicated,
  so any one shard holds the whole array (also across processes)."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf
    out.append((jax.tree_util.keystr(path), np.asarray(array)))
  return out


def layout(tree) -> list[list]:
  """[path, shape, dtype] of every leaf of a state (arrays or ShapeDtypeStructs)."""
  return [
    [jax.tree_util.keystr(path), list(leaf.shape), str(np.dtype(leaf.dtype))]
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  ]


def digest(tree, history: list[dict]) -> str:
  """SHA-256 over every leaf's path, dtype, shape and bytes, then the history."""
  h = hashlib.sha256()
  for path, array in _host_leaves(tree):
    h.update(f"{path}|{array.dtype.str}|{array.shape}|".encode())
    h.update(np.ascontiguousarray(array).tobytes())
  h.update(json.dumps(history, sort_keys=True).encode())
  return h.hexdigest()


class _Corrupt(Exception):
  """A checkpoint that cannot be trusted; the message says why."""


class Checkpoints:
  """orbax checkpoints of (state, metrics history), one per epoch, atomic and
  verified (see the module docstring). Only process 0 moves corrupt ones aside."""

  def __init__(self, directory: str, keep: int):
    import orbax.checkpoint as ocp

    self.ocp = ocp
    self.directory = os.path.abspath(directory)
    self.workdir = os.path.dirname(self.directory)
    self.keep = keep
    try:
      self.manager = self._manager()
    except OSError as e:
      raise workdir_error(self.workdir, os.strerror(e.errno or errno.EIO), "checkpoints", e) from e

  def _manager(self):
    ocp = self.ocp
    return ocp.CheckpointManager(
      self.directory,
      item_names=("state", "history", INTEGRITY),
      options=ocp.CheckpointManagerOptions(
        max_to_keep=self.keep,
        create=True,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=True,
      ),
    )

  def latest(self) -> int | None:
    return self.manager.latest_step()

  def _check_space(self, epoch: int, state) -> None:
    needed = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state))
    needed += _SLACK_BYTES
    free = shutil.disk_usage(self.directory).free
    if free < needed:
      raise workdir_error(
        self.workdir,
        os.strerror(errno.ENOSPC),
        f"the checkpoint of epoch {epoch} ({needed / 2**20:.1f} MiB; "
        f"{free / 2**20:.1f} MiB free on the disk of {self.directory})",
      )

  def save(self, epoch: int, state, history: list[dict]) -> None:
    """Saves `state` (a tree of arrays, replicated) and `history` as step `epoch`."""
    from experiments import cli

    ocp = self.ocp
    self._check_space(epoch, state)
    integrity = {"layout": layout(state), "sha256": digest(state, history)}
    try:
      self.manager.save(
        epoch,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          history=ocp.args.JsonSave({"epochs": history}),
          **{INTEGRITY: ocp.args.JsonSave(integrity)},
        ),
      )
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      cause = cli.disk_cause(e)
      if cause is None:
        raise
      raise workdir_error(self.workdir, cause, f"the checkpoint of epoch {epoch}", e) from e

  def _restore(self, epoch: int, like) -> tuple[Any, list[dict]]:
    """The verified (state, history) of `epoch`; ValueError if `like`'s layout
    differs, _Corrupt if the checkpoint cannot be trusted."""
    ocp = self.ocp
    target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
    )
    items = dict(state=ocp.args.StandardRestore(target), history=ocp.args.JsonRestore())
    step_dir = os.path.join(self.directory, str(epoch))
    state_dir = os.path.join(step_dir, "state")
    if glob.glob(os.path.join(state_dir, "ocdbt.process_*")) and not os.path.isfile(
      os.path.join(state_dir, "manifest.ocdbt")
    ):
      # Found before orbax tries: its failed read leaves TensorStore callbacks on a
      # closed event loop, each printing a traceback.
      raise _Corrupt("its state/manifest.ocdbt is missing")
    integrity = None
    if os.path.isdir(os.path.join(step_dir, INTEGRITY)):
      try:
        integrity = self.manager.restore(
          epoch, args=ocp.args.Composite(**{INTEGRITY: ocp.args.JsonRestore()})
        )[INTEGRITY]
        saved_layout, saved_digest = integrity["layout"], integrity["sha256"]
      except Exception as e:  # pylint: disable=broad-except
        raise _Corrupt(f"its integrity record cannot be read: {_short(e)}") from e
      if saved_layout != layout(target):
        raise ValueError(_layout_difference(saved_layout, layout(target)))
    try:
      with _quiet_orbax_leftovers():
        out = self.manager.restore(epoch, args=ocp.args.Composite(**items))
      state, history = out["state"], list(out["history"]["epochs"])
    except ValueError as e:
      if integrity is None:  # Unverified: a layout mismatch reads as a ValueError.
        raise
      raise _Corrupt(f"it cannot be read: {_short(e)}") from e
    except Exception as e:  # pylint: disable=broad-except
      raise _Corrupt(f"it cannot be read: {_short(e)}") from e
    if integrity is None:
      logging.warning(
        "The checkpoint %s has no integrity record (written by an older version); "
        "restored without verification.",
        step_dir,
      )
    elif digest(state, history) != saved_digest:
      raise _Corrupt("its contents do not match the SHA-256 saved with it")
    return state, history

  def restore_latest(self, like) -> tuple[int, Any, list[dict]] | None:
    """(epoch, state, history) of the newest intact checkpoint, or None when there
    is none at all. Corrupt ones are moved aside with a warning (module docstring).

    Raises:
      ValueError: the newest intact checkpoint was written with another config.
      CheckpointError: there are checkpoints, and every one is corrupt.
    """
    bad = []
    for epoch in sorted(self.manager.all_steps(), reverse=True):
      step_dir = os.path.join(self.directory, str(epoch))
      try:
        state, history = self._restore(epoch, like)
      except _Corrupt as e:
        moved = self._move_aside(epoch)
        bad.append(f"{step_dir} ({e}; moved to {moved})")
        logging.warning(
          "The checkpoint of epoch %d, %s, is corrupt: %s. Moved it to %s; trying the "
          "checkpoint before it.",
          epoch,
          step_dir,
          e,
          moved,
        )
        continue
      if bad:
        logging.warning("Resuming from the intact checkpoint of epoch %d, %s.", epoch, step_dir)
      return epoch, state, history
    if bad:
      raise CheckpointError(
        f"No intact checkpoint to resume from in {self.directory}: {'; '.join(bad)}. "
        "Rerun to start this workdir from scratch, or use a new workdir."
      )
    return None

  def _move_aside(self, epoch: int) -> str:
    """Moves step `epoch` to `<workdir>/corrupt_checkpoints/<epoch>[-k]`, so that
    neither this run nor a later one reads it, and reloads the manager."""
    target = os.path.join(self.workdir, CORRUPT_DIR, str(epoch))
    k = 1
    while os.path.exists(target):
      target = os.path.join(self.workdir, CORRUPT_DIR, f"{epoch}-{k}")
      k += 1
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(os.path.join(self.directory, str(epoch)), target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"jaxpool_checkpoint_moved_{epoch}")
    self.manager.close()
    self.manager = self._manager()
    return target

  def close(self):
    self.manager.close()


@contextlib.contextmanager
def _quiet_orbax_leftovers():
  """When orbax fails to read one array, the reads of the others end as coroutines
  whose exception Python reports when they are collected ("Exception ignored in",
  with a TensorStore dump each), repeating the error that the restore raised. They
  are collected here, and such reports from orbax's frames are dropped."""
  previous = sys.unraisablehook

  def hook(unraisable):
    tb = unraisable.exc_traceback
    while tb is not None:
      if f"{os.sep}orbax{os.sep}" in tb.tb_frame.f_code.co_filename:
        return
      tb = tb.tb_next
    previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = previous


def _short(error: BaseException, limit: int = 300) -> str:
  return cli.squeeze(f"{type(error).__name__}: {error}", limit)


def _layout_difference(saved: list, current: list) -> str:
  saved_d = {p: (s, d) for p, s, d in saved}
  current_d = {p: (s, d) for p, s, d in current}
  for path in sorted(set(saved_d) | set(current_d)):
    if saved_d.get(path) != current_d.get(path):
      return (
        f"the checkpoint's array {path} is {saved_d.get(path, 'absent')}, this config's "
        f"is {current_d.get(path, 'absent')}"
      )
  return "the checkpoint's arrays differ from this config's"
