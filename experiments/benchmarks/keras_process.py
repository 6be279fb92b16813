"""The Keras side of the training table: experiments/keras_throughput.py in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from experiments import allocator

KERAS_SCRIPT = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_throughput.py"
)


def _last_json_object(text: str) -> dict | None:
  """The last line of `text` that is a JSON object (TensorFlow may print before it)."""
  for line in reversed(text.strip().splitlines()):
    line = line.strip()
    if line.startswith("{"):
      try:
        value = json.loads(line)
      except ValueError:
        continue
      if isinstance(value, dict):
        return value
  return None


def _keras_result(out: dict) -> dict:
  """The benchmark's view of keras_throughput.py's final JSON (see its docstring)."""
  if "skipped" in out:
    return {"keras": f"skipped: {out['skipped']}"}
  try:
    result = {"keras images/s": float(out["images/s"])}
    for name, v in out["variants"].items():
      result[f"keras {name} images/s"] = float(v["images/s"])
    result["keras_best"] = str(out["best"])
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    return {
      "keras": f"failed: unexpected output of keras_throughput.py "
      f"({type(e).__name__}: {e}): {json.dumps(out)[:300]}"
    }
  result["keras_run"] = out
  return result


class KerasProcess:
  """experiments/keras_throughput.py --serve in a subprocess, one round on request.

  TensorFlow and JAX in one process fight over threads and memory, hence a process
  of its own, under `config.training.keras_python` ("" = this interpreter, and then
  only if it can import tensorflow, checked without importing it). Every method
  that ends the Keras measurement returns `{"keras": "skipped: ..."}` /
  `{"keras": "failed: ..."}` or the final result (`_keras_result`); `round` returns
  None while all is well.
  """

  def __init__(self, cmd: list[str]):
    self.cmd = cmd
    self._stderr = tempfile.TemporaryFile(mode="w+")
    # The allocator options of this process (experiments.allocator): same for all.
    env = {**os.environ, **allocator.environment()}
    self.proc = subprocess.Popen(
      cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
    )
    self._lines: queue.Queue = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()

  @classmethod
  def start(cls, config, log) -> tuple[KerasProcess | None, dict | None]:
    cfg = config.training
    python = cfg.get("keras_python", "")
    how = "set --config.training.keras_python to the python of an environment that has tensorflow"
    if not python:
      if importlib.util.find_spec("tensorflow") is None:
        return None, {"keras": f"skipped: tensorflow is not importable by {sys.executable}; {how}"}
      python = sys.executable
    elif shutil.which(python) is None:
      return None, {
        "keras": f"skipped: config.training.keras_python={python!r} is not an executable; {how}"
      }
    cmd = [
      python,
      KERAS_SCRIPT,
      "--serve",
      "--batch-size",
      str(cfg.batch_size),
      "--steps",
      str(cfg.steps),
      "--settle",
      str(cfg.get("keras_settle", 1)),
      "--seed",
      str(config.seed),
      "--variants",
      cfg.get("keras_variants", "default"),
    ]
    log(f"  keras: {' '.join(cmd)}")
    try:
      return cls(cmd), None
    except OSError as e:
      return None, {"keras": f"failed: could not run {python}: {e}"}

  def _read(self):
    for line in self.proc.stdout:
      self._lines.put(line)
    self._lines.put(None)

  def _failed(self, why: str) -> dict:
    self._stderr.seek(0)
    tail = " | ".join(self._stderr.read().strip().splitlines()[-3:])[-500:]
    self.close(kill=True)
    return {
      "keras": f"failed: {os.path.basename(KERAS_SCRIPT)} {why}" + (f": {tail}" if tail else "")
    }

  def _receive(self, timeout: float) -> dict | str:
    """The next JSON object the script prints, or why there is none (a str)."""
    deadline = time.monotonic() + timeout
    while True:
      try:
        line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
      except queue.Empty:
        return f"gave no answer within {timeout} s (config.training.keras_timeout_s)"
      if line is None:
        return f"exited {self.proc.wait()} early"
      obj = _last_json_object(line)
      if obj is not None:
        return obj

  def _send(self, command: str) -> bool:
    try:
      self.proc.stdin.write(command + "\n")
      self.proc.stdin.flush()
      return True
    except (BrokenPipeError, OSError, ValueError):
      return False

  def ready(self, timeout: float) -> dict | None:
    """Wait until every variant is built and traced (None), or say why not."""
    obj = self._receive(timeout)
    if isinstance(obj, str):
      return self._failed(obj)
    if "ready" not in obj:
      self.close()
      return _keras_result(obj)  # {"skipped": ...} (no tensorflow) or unexpected
    return None

  def round(self, timeout: float) -> dict | None:
    if not self._send("round"):
      return self._failed(f"exited {self.proc.wait()} early")
    obj = self._receive(timeout)
    if isinstance(obj, str):
      return self._failed(obj)
    if "round" not in obj:
      self.close()
      return _keras_result(obj)
    return None

  def finish(self, timeout: float) -> dict:
    if not self._send("done"):
      return self._failed(f"exited {self.proc.wait()} early")
    obj = self._receive(timeout)
    if isinstance(obj, str):
      return self._failed(obj)
    self.close()
    return _keras_result(obj)

  def close(self, kill: bool = False):
    """End the process: EOF on its stdin (it prints its summary and exits), or kill."""
    if self.proc.poll() is None:
      if kill:
        self.proc.kill()
      try:
        self.proc.stdin.close()
      except OSError:
        pass
      try:
        self.proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    if not self._stderr.closed:
      self._stderr.close()
