"""The Keras row of the training benchmark: experiments/keras_throughput.py and the
subprocess that experiments/benchmarks/keras_process.py talks to.

TensorFlow is not a dependency: the skip paths, the line protocol and the JSON
parsing are tested with a fake interpreter (a small script that speaks the protocol
of `keras_throughput.py --serve`); the real script runs only where tensorflow is
importable (this interpreter, or the one named by $JAXPOOL_KERAS_PYTHON).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ml_collections")
pytest.importorskip("absl")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "keras_throughput.py")


def _config(**training):
  from configs import benchmark as benchmark_config  # noqa: PLC0415

  config = benchmark_config.get_config("quick")
  for k, v in training.items():
    config.training[k] = v
  return config


def _fake_python(tmp_path, body: str) -> str:
  """An executable that stands in for a python with tensorflow: it is called as
  `fake keras_throughput.py --serve ...` and runs `body` with `argv` (everything
  after the script path), `emit(obj)` (one JSON line on stdout) and sys in scope."""
  path = tmp_path / "fake_python"
  path.write_text(
    f"#!{sys.executable}\n"
    + textwrap.dedent("""\
      import json, sys, time
      argv = sys.argv[2:]
      def emit(obj):
        print(json.dumps(obj), flush=True)
      """)
    + textwrap.dedent(body)
  )
  path.chmod(path.stat().st_mode | stat.S_IXUSR)
  return str(path)


# A fake that answers as keras_throughput.py does: noise first (TensorFlow logs on
# stdout), ready, one round per request, the summary on "done" with per-variant
# images/s of 1000 * (index + 1) * rounds, so the parsed numbers can be checked.
_SERVING = """
print("WARNING: some TensorFlow noise on stdout", flush=True)
print("{not json", flush=True)
names = ["fit_numpy", "tf_function"]
emit({"ready": names})
rounds = 0
for line in sys.stdin:
  if line.strip() == "done":
    break
  rounds += 1
  emit({"round": {n: 0.5 for n in names}})
variants = {n: {"images/s": 1000.0 * (i + 1) * rounds, "median_ms": 1.0,
                "repeats": rounds} for i, n in enumerate(names)}
emit({"tensorflow": "fake", "keras": "fake", "argv": argv, "variants": variants,
      "best": "tf_function", "images/s": variants["tf_function"]["images/s"]})
"""


def test_skipped_without_tensorflow_or_without_an_interpreter(monkeypatch):
  from experiments.benchmarks import keras_process  # noqa: PLC0415

  real = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a)
  )
  proc, result = keras_process.KerasProcess.start(_config(keras_python=""), print)
  assert proc is None
  assert result["keras"].startswith("skipped: tensorflow is not importable by")
  assert "keras_python" in result["keras"]  # says what to set
  proc, result = keras_process.KerasProcess.start(
    _config(keras_python="/nonexistent/bin/python"), print
  )
  assert proc is None
  assert "'/nonexistent/bin/python' is not an executable" in result["keras"]


def test_protocol_rounds_and_parsing_with_a_fake_interpreter(tmp_path):
  from experiments.benchmarks import keras_process  # noqa: PLC0415

  config = _config(
    keras_python=_fake_python(tmp_path, _SERVING),
    batch_size=16,
    steps=3,
    keras_settle=2,
    keras_variants="fit_numpy,tf_function",
  )
  proc, result = keras_process.KerasProcess.start(config, lambda *a: None)
  assert result is None
  try:
    assert proc.ready(timeout=60) is None
    for _ in range(3):
      assert proc.round(timeout=60) is None
    result = proc.finish(timeout=60)
  finally:
    proc.close(kill=True)
  assert proc.proc.poll() is not None  # the process is gone
  assert result["keras images/s"] == 6000.0  # best variant, 3 rounds answered
  assert result["keras fit_numpy images/s"] == 3000.0
  assert result["keras tf_function images/s"] == 6000.0
  assert result["keras_best"] == "tf_function"
  argv = result["keras_run"]["argv"]
  assert argv[0] == "--serve"
  opts = dict(zip(argv[1::2], argv[2::2]))
  assert opts == {
    "--batch-size": "16",
    "--steps": "3",
    "--settle": "2",
    "--seed": str(config.seed),
    "--variants": "fit_numpy,tf_function",
  }


def test_a_failing_or_silent_interpreter_is_reported_not_fatal(tmp_path):
  from experiments.benchmarks import keras_process  # noqa: PLC0415

  crash = _fake_python(tmp_path, "sys.stderr.write('ImportError: boom\\n'); sys.exit(3)\n")
  proc, _ = keras_process.KerasProcess.start(_config(keras_python=crash), lambda *a: None)
  result = proc.ready(timeout=60)
  assert result["keras"].startswith("failed: keras_throughput.py exited 3 early")
  assert result["keras"].endswith("ImportError: boom")

  (tmp_path / "silent").mkdir()
  silent = _fake_python(tmp_path / "silent", "time.sleep(600)\n")
  proc, _ = keras_process.KerasProcess.start(_config(keras_python=silent), lambda *a: None)
  result = proc.ready(timeout=0.5)
  assert "gave no answer within 0.5 s" in result["keras"]
  assert proc.proc.poll() is not None  # killed, not left behind

  (tmp_path / "skip").mkdir()
  skip = _fake_python(tmp_path / "skip", "emit({'skipped': 'tensorflow is not importable'})\n")
  proc, _ = keras_process.KerasProcess.start(_config(keras_python=skip), lambda *a: None)
  assert proc.ready(timeout=60) == {"keras": "skipped: tensorflow is not importable"}


def test_training_table_with_the_fake_keras(tmp_path):
  """The training part of the benchmark end to end (tiny :quick sizes, no pool
  cases) with the fake Keras: its rows and the ratios in benchmark.json and .md."""
  workdir = tmp_path / "bench"
  fake = _fake_python(tmp_path, _SERVING)
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.benchmark",
      "--config=configs/benchmark.py:quick",
      f"--workdir={workdir}",
      "--quiet",
      "--config.cases=()",
      f"--config.training.keras_python={fake}",
    ],
    cwd=ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((workdir / "benchmark.json").read_text())
  markdown = (workdir / "benchmark.md").read_text()
  assert result["rows"] == []  # no pooling case ran
  tr = result["training"]
  assert "skipped" not in tr, tr
  rounds = tr["timings"]["jaxpool.max_pool"]["repeats"]
  assert rounds == result["config"]["training"]["repeats"]
  # the fake's best is 2000 images/s per round answered: one round per JAX round
  assert tr["keras images/s"] == 2000.0 * rounds
  assert tr["jaxpool_over_keras"] == pytest.approx(
    tr["jaxpool.max_pool images/s"] / (2000.0 * rounds)
  )
  assert tr["flax_over_keras"] == pytest.approx(
    tr["flax.linen.max_pool images/s"] / (2000.0 * rounds)
  )
  assert "| keras (fastest: tf_function) |" in markdown
  assert f"jaxpool / keras: {tr['jaxpool_over_keras']:.2f}x" in markdown


def _load_script():
  spec = importlib.util.spec_from_file_location("keras_throughput", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_script_variants_and_arguments():
  kt = _load_script()
  assert kt.variant_names("default") == ["fit_numpy", "fit_tfdata_spe", "tf_function"]
  every = kt.variant_names("all")
  assert len(every) == 10 and "tf_function+xla" in every and "fit_numpy_spe" in every
  assert kt.variant_names("tf_function, fit_numpy,tf_function") == ["tf_function", "fit_numpy"]
  with pytest.raises(ValueError, match="unknown.*'fit_jax'"):
    kt.variant_names("fit_numpy,fit_jax")
  with pytest.raises(SystemExit):
    kt._parse(["--steps", "0"])
  with pytest.raises(SystemExit):
    kt._parse(["--variants", "nope"])
  with open(SCRIPT) as f:  # runs under a python without jax: imports none of it
    assert not re.search(
      r"^\s*(import|from)\s+(jax|jaxpool|experiments|flax)\b", f.read(), re.MULTILINE
    )


@pytest.mark.skipif(
  importlib.util.find_spec("tensorflow") is not None,
  reason="tensorflow is importable here: the no-tensorflow path is not",
)
@pytest.mark.parametrize("serve", [False, True])
def test_script_without_tensorflow_prints_a_skip(serve):
  proc = subprocess.run(
    [sys.executable, SCRIPT, "--steps", "2"] + ["--serve"] * serve,
    capture_output=True,
    text=True,
    timeout=60,
    stdin=subprocess.DEVNULL,
  )
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["skipped"].startswith(f"tensorflow is not importable by {sys.executable}")


def _tf_python():
  python = os.environ.get("JAXPOOL_KERAS_PYTHON")
  if python:
    return python
  if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("tensorflow is not importable (set $JAXPOOL_KERAS_PYTHON to a python with it)")
  return sys.executable


def test_script_with_tensorflow_trains_and_times_each_variant():
  python = _tf_python()
  code = textwrap.dedent(f"""\
      import json, sys
      sys.argv = ["keras_throughput.py"]
      sys.path.insert(0, {os.path.dirname(SCRIPT)!r})
      import tensorflow as tf
      made = []
      Adam = tf.keras.optimizers.Adam
      def counting_adam(*a, **k):
        made.append(Adam(*a, **k))
        return made[-1]
      tf.keras.optimizers.Adam = counting_adam
      import keras_throughput
      out = keras_throughput.main(["--batch-size", "4", "--steps", "3", "--repeats", "2",
                                   "--settle", "1"])
      out["steps_done"] = [int(o.iterations.numpy()) for o in made]
      out["jax_imported"] = "jax" in sys.modules
      print(json.dumps(out))
      """)
  proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert list(out["variants"]) == ["fit_numpy", "fit_tfdata_spe", "tf_function"]
  # each variant: 1 tracing epoch + 2 rounds x (1 settle + 1 timed), 3 steps per epoch
  assert out["steps_done"] == [15, 15, 15]
  assert not out["jax_imported"]
  for v in out["variants"].values():
    assert v["repeats"] == 2 and v["images/s"] == pytest.approx(12 / (v["median_ms"] / 1e3))
  assert out["images/s"] == max(v["images/s"] for v in out["variants"].values())
  assert out["variants"][out["best"]]["images/s"] == out["images/s"]
  assert set(out["threads"]) >= {"intra_op", "inter_op", "cpu_count"}
