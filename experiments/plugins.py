"""Users' pools in the experiments: `--config.plugins=package.module[,other.module]`.

A plugin is any importable module that registers pools when imported
(`jaxpool.registry.register`); `load` imports them before the pools of a run or a
study are resolved, so that `configs/compare.py:pools=max+mypool` can name them.
Modules are separated by commas or `+` (a config argument such as
`configs/compare.py:plugins=a+b` already uses commas between its items).
"""

from __future__ import annotations

import importlib
import re

from experiments import cli


class PluginError(cli.ConfigError):
  """A plugin module that cannot be imported; its message is one line."""


def names(spec) -> list[str]:
  """The module names of a `plugins` config value ("" or None: none), in order."""
  if not spec:
    return []
  if isinstance(spec, (list, tuple)):
    spec = ",".join(spec)
  return list(dict.fromkeys(s.strip() for s in re.split(r"[,+]", str(spec)) if s.strip()))


def load(spec) -> list[str]:
  """Imports every plugin module of `spec`; returns their names.

  Raises:
    PluginError: naming the module that could not be imported and why (a missing
      module, or the exception its import raised).
  """
  loaded = []
  for name in names(spec):
    try:
      importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure of a user's module, in one line
      reason = f"{type(e).__name__}: {e}".splitlines()[0]
      raise PluginError(
        f"config.plugins: cannot import the plugin module {name!r} ({reason}); a plugin is "
        "an importable module (run from the repository root or put it on PYTHONPATH) that "
        "calls jaxpool.registry.register."
      ) from None
    loaded.append(name)
  return loaded
