"""The code of docs/write_your_own_pool.md runs: its python blocks, in order.

The study of step 4 is shrunk (tfds mock data, a few examples, one epoch) by
wrapping configs/compare.py's get_config; everything else runs as written.
"""

import os
import re
import sys

from jaxpool import registry

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(ROOT, "docs", "write_your_own_pool.md")


def python_blocks(path):
  with open(path) as f:
    text = f.read()
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_page_has_under_40_lines_of_user_code():
  lines = [
    line
    for block in python_blocks(PAGE)
    for line in block.splitlines()
    if line.strip() and not line.strip().startswith("#")
  ]
  assert 10 < len(lines) < 40, len(lines)


def test_the_page_runs(tmp_path, monkeypatch):
  from configs import compare as study  # noqa: PLC0415

  get_config = study.get_config

  def small(arg=None):
    config = get_config(arg)
    config.base.data.mock = True
    config.base.data.mock_num_examples = 64
    config.base.max_train_examples = 64
    config.base.batch_size = 32
    config.base.eval_batch_size = 32
    config.base.num_epochs = 1
    config.quiet = True
    return config

  monkeypatch.setattr(study, "get_config", small)
  monkeypatch.chdir(tmp_path)  # the study's workdir is relative
  monkeypatch.syspath_prepend(ROOT)
  namespace = {"__name__": "write_your_own_pool"}
  try:
    for block in python_blocks(PAGE):
      exec(compile(block, PAGE, "exec"), namespace)  # noqa: S102 - the page's own code
  finally:
    for name in ("smooth_max", "top2"):
      if name in registry.names():
        registry.unregister(name)
  assert namespace["y"].shape == (8, 14, 14, 16)
  assert namespace["grad"].shape == namespace["x"].shape
  rows = {r["pool"]: r for r in namespace["rows"]}
  assert set(rows) == {"max", "smooth_max", "top2"}
  assert all(r["seeds_completed"] == 1 for r in rows.values()), rows
  assert (tmp_path / "runs" / "smooth_max" / "results.md").exists()
  assert sys.modules.get("write_your_own_pool") is None
