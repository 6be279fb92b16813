"""Sphinx configuration of the jaxpool documentation (built by scripts/docs.sh)."""

import os
import re
import sys

# The package is installed (editable) by scripts/docs.sh; the repository root on the
# path also makes `experiments` importable for the notebook's MNIST reader.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import jaxpool  # noqa: E402

project = "jaxpool"
author = "the jaxpool authors"
copyright = "the jaxpool authors"  # noqa: A001 (Sphinx's name)
release = jaxpool.__version__
version = release

extensions = [
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
  "myst_nb",  # markdown pages (myst-parser) and the executed example notebook
  "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# -- API pages ---------------------------------------------------------------------
autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# The Linen/NNX modules document their options in the class docstring; their
# __init__ has none of its own.
autoclass_content = "class"
# A method without a docstring (e.g. a module's __call__) shows none, not object's.
autodoc_inherit_docstrings = False
add_module_names = False

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields, so they never clash with autodoc's

# -- Markdown (MyST) and notebooks -------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# The notebook is stored without outputs and executed on every build, so the pages
# always show what the current code does. It picks its data by itself: MNIST where
# $JAXPOOL_MNIST_DIR names the IDX files, a small synthetic set elsewhere.
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML --------------------------------------------------------------------------
html_theme = "furo"
html_title = f"jaxpool {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {"navigation_with_keys": True}


# -- Signatures of NNX modules ------------------------------------------------------
def _constructor_signature(app, what, name, obj, options, signature, return_annotation):
  """A class's __init__ arguments where its metaclass's __call__ hides them.

  NNX modules are built through a metaclass whose __call__ takes (*args, **kwargs);
  autodoc would show that instead of the module's own arguments.
  """
  import inspect

  if what != "class" or not signature or not signature.startswith("(*args"):
    return None
  init = obj.__dict__.get("__init__") or getattr(obj, "__init__", None)
  try:
    sig = inspect.signature(init)
  except (TypeError, ValueError):
    return None
  params = list(sig.parameters.values())[1:]  # drop self
  return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty)), None


_ATTR_LIST = re.compile(r"^(\s*)([A-Za-z_]\w*(?:, [A-Za-z_]\w*)+): (.*)$")


def _split_attribute_lists(app, what, name, obj, options, lines):
  """``a, b: text`` in an ``Attributes:`` section -> one entry per name.

  Napoleon splits such entries in ``Args:`` but not in ``Attributes:``, where it
  would render them as one field named by the last name.
  """
  out, section_indent, i = [], None, 0
  while i < len(lines):
    line = lines[i]
    indent = len(line) - len(line.lstrip())
    if line.strip() == "Attributes:":
      section_indent = indent
    elif line.strip() and section_indent is not None and indent <= section_indent:
      section_indent = None
    match = _ATTR_LIST.match(line) if section_indent is not None else None
    if match and len(match.group(1)) > section_indent:
      rest = []  # continuation lines of this entry
      while (
        i + 1 < len(lines)
        and lines[i + 1].strip()
        and (len(lines[i + 1]) - len(lines[i + 1].lstrip()) > len(match.group(1)))
      ):
        i += 1
        rest.append(lines[i])
      for attr in match.group(2).split(", "):
        out += [f"{match.group(1)}{attr}: {match.group(3)}", *rest]
    else:
      out.append(line)
    i += 1
  lines[:] = out


# -- A table of the registry, from the registry itself -----------------------------
def setup(app):
  from docutils import nodes
  from docutils.parsers.rst import Directive
  from docutils.statemachine import StringList
  from sphinx.util.nodes import nested_parse_with_titles

  from jaxpool import registry

  class RegistryTable(Directive):
    """Every registered name with its function, module and summary (list-table)."""

    def run(self):
      lines = [".. list-table::", "   :header-rows: 1", "", "   * - name", "     - function"]
      lines += ["     - module (linen, nnx)", "     - what it computes"]
      for name in registry.names():
        info = registry.info(name)
        lines += [f"   * - ``{name}``", f"     - :func:`~jaxpool.{info['function']}`"]
        lines += [
          f"     - ``{info['module']}``",
          f"     - {info['summary'].replace('|', chr(92) + '|')}",
        ]
      node = nodes.section()
      node.document = self.state.document
      nested_parse_with_titles(self.state, StringList(lines, source="registry"), node)
      return node.children

  app.add_directive("jaxpool-registry-table", RegistryTable)
  app.connect("autodoc-process-signature", _constructor_signature)
  # Before napoleon (priority 500) turns the sections into fields.
  app.connect("autodoc-process-docstring", _split_attribute_lists, priority=400)
  return {"parallel_read_safe": True}
