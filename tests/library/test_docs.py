"""The API reference names every public name of jaxpool's public modules.

A name missing from docs/api/*.md would have no page on the documentation site, so a
new public function or module must be added there (as a line of an autosummary list).
Every Linen/NNX module's docstring lists every option of its constructor.
"""

import dataclasses
import inspect
import pathlib
import re

import pytest

import jaxpool
from jaxpool import registry

API_DIR = pathlib.Path(__file__).resolve().parents[2] / "docs" / "api"


def _documented(page: str) -> set[str]:
  """Names listed in autosummary/autodata/autofunction/autoclass entries of a page."""
  text = (API_DIR / page).read_text()
  names = set(re.findall(r"^\s{3}([A-Za-z_][A-Za-z0-9_]*)\s*$", text, re.M))
  names |= set(re.findall(r"^\.\. auto(?:data|function|class):: ([A-Za-z_][\w.]*)", text, re.M))
  return {n.rsplit(".", 1)[-1] for n in names}


def _public(module) -> set[str]:
  """`__all__` where a module has one; else its own classes and UPPER_CASE constants."""
  if hasattr(module, "__all__"):
    return set(module.__all__)
  out = set()
  for name, obj in vars(module).items():
    if name.startswith("_"):
      continue
    if inspect.isclass(obj) and obj.__module__ == module.__name__:
      out.add(name)
    elif inspect.isfunction(obj) and obj.__module__ == module.__name__:
      out.add(name)
    elif name.isupper():
      out.add(name)
  return out


def _flax_module(name):
  pytest.importorskip("flax")
  import importlib

  return importlib.import_module(f"jaxpool.{name}")


def test_parser_reads_autosummary_lists():
  # Guards the regular expressions above: a known name in each form is found.
  assert "max_pool" in _documented("functions.md")
  assert "RNG_STREAM" in _documented("linen.md")
  assert {"make", "APIS"} <= _documented("registry.md")


@pytest.mark.parametrize(
  "page, module",
  [
    ("functions.md", "jaxpool"),
    ("registry.md", "registry"),
    ("linen.md", "linen"),
    ("nnx.md", "nnx"),
  ],
)
def test_every_public_name_is_in_the_api_reference(page, module):
  mod = {"jaxpool": jaxpool, "registry": registry}.get(module) or _flax_module(module)
  missing = sorted(_public(mod) - _documented(page))
  assert not missing, f"docs/api/{page} does not list {missing}: add them to an autosummary list."


@pytest.mark.parametrize("module", ["linen", "nnx"])
def test_every_module_docstring_describes_every_option(module):
  # The options read from each class's constructor here, independently of how the
  # docstrings are built; each must head an entry of the Attributes:/Args: list.
  mod = _flax_module(module)
  section = "Attributes:" if module == "linen" else "Args:"
  for name in sorted(_public(mod)):
    cls = getattr(mod, name)
    if not inspect.isclass(cls):
      continue
    if dataclasses.is_dataclass(cls):
      options = [f.name for f in dataclasses.fields(cls) if f.init]
      options = [o for o in options if o not in ("parent", "name")]
    else:
      options = list(inspect.signature(cls.__init__).parameters)[1:]
    doc = inspect.cleandoc(cls.__doc__ or "")
    assert f"\n{section}\n" in doc, name
    listed = doc.split(f"\n{section}\n", 1)[1].split("\n\n", 1)[0]
    for option in options:
      entry = rf"^  (\w+, )*{option}(, \w+)*:\s+\S"
      assert re.search(entry, listed, re.M), f"{module}.{name}: {option} is not described"
