"""Users' pools in the study: --config.plugins imports a module that registers one.

examples/median_pool_plugin.py registers "median"; experiments.compare runs it
beside max pooling from the command line's flags (configs/compare.py:quick with
pools=max+median, one seed, one epoch of a few tfds mock examples), and a bad
module name stops both command lines with one line naming it.
"""

import json
import os
import subprocess
import sys

import pytest
from absl import flags

from experiments import compare
from experiments import plugins
from jaxpool import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = "examples.median_pool_plugin"


@pytest.fixture
def clean_registry():
  """The plugin registers "median" on import: forget both afterwards."""
  yield
  if "median" in registry.names():
    registry.unregister("median")
  sys.modules.pop(PLUGIN, None)


def test_names_split_on_commas_and_plus():
  assert plugins.names("") == [] and plugins.names(None) == []
  assert plugins.names("a.b, c+a.b,d") == ["a.b", "c", "d"]


def test_load_imports_and_registers(clean_registry):
  assert plugins.load(PLUGIN) == [PLUGIN]
  assert "median" in registry.names()
  assert registry.info("median")["summary"].startswith("median of every window")


def test_a_missing_module_is_one_line_naming_it():
  with pytest.raises(plugins.PluginError, match=r"'no_such_pkg.pools' \(ModuleNotFoundError") as e:
    plugins.load("no_such_pkg.pools")
  assert "\n" not in str(e.value)


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_compare_runs_the_plugin_pool(tmp_path, monkeypatch, clean_registry):
  workdir = tmp_path / "study"
  argv = [
    "compare.py",
    "--config=configs/compare.py:quick,pools=max+median,seeds=1,epochs=1",
    f"--config.plugins={PLUGIN}",
    f"--workdir={workdir}",
    "--quiet",
    "--config.base.data.mock=True",
    "--config.base.data.mock_num_examples=64",
    "--config.base.max_train_examples=64",
    "--config.base.batch_size=32",
    "--config.base.eval_batch_size=32",
  ]
  monkeypatch.chdir(ROOT)
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads overrides there
  flag_values = compare.define_flags(flags.FlagValues())
  flag_values(argv)
  assert "median" not in registry.names()  # not until the study imports the plugin
  compare.main(["compare.py"], flag_values)
  rows = {r["pool"]: r for r in compare.write_tables(str(workdir))}
  assert set(rows) == {"max", "median"}
  for row in rows.values():
    assert row["seeds_completed"] == 1, row
    assert 0.0 <= row["test_error_mean"] <= 100.0
  cell = json.loads((workdir / "cells" / "median-seed0" / "config.json").read_text())
  assert cell["pool"] == "median" and cell["plugins"] == PLUGIN
  summary = json.loads((workdir / "cells" / "median-seed0" / "summary.json").read_text())
  assert summary["pool"] == "median" and summary["completed"]


@pytest.mark.parametrize("program", ["experiments.compare", "experiments.train"])
def test_a_bad_plugin_stops_the_command_line_with_one_line(tmp_path, program):
  config = "configs/compare.py:quick" if program.endswith("compare") else "configs/mnist.py:quick"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      program,
      f"--config={config}",
      "--config.plugins=no_such_pkg.pools",
      f"--workdir={tmp_path / 'run'}",
    ],
    cwd=ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=180,
  )
  assert proc.returncode != 0
  lines = [line for line in proc.stderr.strip().splitlines() if "no_such_pkg" in line]
  assert lines and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert "cannot import the plugin module 'no_such_pkg.pools'" in lines[-1]
