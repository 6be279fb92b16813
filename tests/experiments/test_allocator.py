"""experiments.allocator: the optional malloc options of the benchmark, in fresh
processes (they are process-wide, so never in the test process itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from experiments import allocator

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ALL = {"M_ARENA_MAX": 1, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 1 << 30, "M_TOP_PAD": 256 << 20}

pytestmark = pytest.mark.skipif(
  allocator._glibc_mallopt() is None, reason="the options are glibc's; this C library has none"
)


def _run(env_extra: dict[str, str]) -> dict:
  """from_environment() in a new interpreter; what it set, says and passes on."""
  code = (
    "import json; from experiments import allocator\n"
    "try:\n  applied = allocator.from_environment()\n"
    "except ValueError as e:\n  applied = str(e)\n"
    "print(json.dumps({'applied': applied, 'describe': allocator.describe(), "
    "'environment': allocator.environment()}))"
  )
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith("MALLOC_") and k != allocator.SETTING_ENV
  }
  env.update(env_extra)
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=_ROOT, env=env, check=True, capture_output=True, text=True
  )
  return json.loads(out.stdout)


def test_retain_sets_every_option_and_passes_them_to_subprocesses():
  got = _run({"JAXPOOL_MALLOC": "retain"})
  assert got["applied"] == _ALL
  assert got["environment"] == {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
  }
  assert got["describe"].startswith("retain freed memory: M_ARENA_MAX=1")


def test_an_option_set_in_the_environment_is_left_alone():
  got = _run({"JAXPOOL_MALLOC": "retain", "MALLOC_ARENA_MAX": "4"})
  assert got["applied"] == {k: v for k, v in _ALL.items() if k != "M_ARENA_MAX"}
  assert "MALLOC_ARENA_MAX" not in got["environment"]


@pytest.mark.parametrize("setting", [None, "default"])
def test_default_changes_nothing(setting):
  got = _run({} if setting is None else {"JAXPOOL_MALLOC": setting})
  assert got["applied"] == {} and got["environment"] == {}
  assert got["describe"].startswith("system default")


def test_unknown_setting_raises():
  assert "must be 'retain' or 'default'" in _run({"JAXPOOL_MALLOC": "fast"})["applied"]
