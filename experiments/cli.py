"""The command lines of the experiments: configs checked up front, errors in one line.

`python -m experiments.train`, `.compare` and `.benchmark` define their flags and
run their `main` through `run(main, prog=..., define_flags=...)`, which

- checks every `--config.a.b=value` override against the loaded config before the
  flags are parsed: an unknown key is refused naming it, the valid keys at that
  level and the closest valid key anywhere ("did you mean"); children of the
  `open_paths` (pool options) are free-form and checked later against the pool;
- turns a flag-parsing error and every expected error of `main` (ValueError,
  TypeError, OSError, data/checkpoint errors, non-finite loss, ...) into one line
  `prog: error: message` on stderr and a non-zero exit (2 for a bad command line,
  1 for a failure of the run), without a traceback. `JAXPOOL_TRACEBACK=1` shows
  the traceback instead, for debugging.

The checks of a loaded config (`check_keys`, `check_pool`) raise `ConfigError`
(a ValueError) with the same kind of message; pool names and options come from
`jaxpool.registry` at call time, so pools that a config's `plugins` registered
are known by then.

Example:

    >>> suggest("num_epoch", ["batch_size", "num_epochs"])
    'num_epochs'
    >>> import ml_collections
    >>> schema = ml_collections.ConfigDict({"num_epochs": 1, "data": {"raw_dir": ""}})
    >>> check_keys(ml_collections.ConfigDict({"num_epoch": 2}), schema)
    Traceback (most recent call last):
    ...
    experiments.cli.ConfigError: unknown config key 'num_epoch'; did you mean 'num_epochs'? \
valid keys: data.<key>, num_epochs
"""

from __future__ import annotations

import difflib
import errno
import fnmatch
import logging as pylogging
import os
import sys
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

# Keys that any config (or part of one) may have: `plugins` names modules that
# register extra pools (their import is the program's business, before pools are
# checked).
ALWAYS_ALLOWED = ("plugins",)
TRACEBACK_ENV = "JAXPOOL_TRACEBACK"
# Errors whose message is written for the user: printed without their type name
# (the experiments' own error classes by name, so that this module imports none).
_USER_MESSAGES = (ValueError, FloatingPointError)
_USER_MESSAGE_CLASSES = ("WorkdirError", "CheckpointError", "MnistDataError")


class ConfigError(ValueError):
  """A config or command line that names an unknown key, pool, model or option."""


# --------------------------------------------------------------------- suggestions


def suggest(word: str, choices: Iterable[str]) -> str | None:
  """The choice closest to `word` (difflib ratio >= 0.6), comparing whole dotted
  names first and then their last parts (`epoch` -> `base.num_epochs`); or None."""
  choices = list(dict.fromkeys(str(c) for c in choices))
  match = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
  if match:
    return match[0]
  tails = {}
  for c in choices:
    tails.setdefault(c.rsplit(".", 1)[-1], c)
  match = difflib.get_close_matches(str(word).rsplit(".", 1)[-1], list(tails), n=1, cutoff=0.6)
  return tails[match[0]] if match else None


def hint(word: str, choices: Iterable[str]) -> str:
  """`"; did you mean 'x'?"` for the closest choice, else `";"` (the text before a
  list of the valid choices)."""
  match = suggest(word, choices)
  return f"; did you mean {match!r}?" if match else ";"


def unknown(what: str, got, choices: Sequence[str], *, where: str = "") -> ConfigError:
  """`ConfigError("<where>: unknown <what> 'x'; did you mean 'y'? valid <what>s: ...")`."""
  prefix = f"{where}: " if where else ""
  return ConfigError(
    f"{prefix}unknown {what} {got!r}{hint(got, choices)} valid {what}s: "
    f"{', '.join(map(str, choices))}"
  )


# ------------------------------------------------------------------------ configs


def _is_dict(x) -> bool:
  return isinstance(x, Mapping) or hasattr(x, "to_dict")


def _is_open(path: str, open_paths: Sequence[str]) -> bool:
  return any(fnmatch.fnmatchcase(path, pattern) for pattern in open_paths)


def leaf_paths(config, prefix: str = "") -> list[str]:
  """The dotted paths of every non-dict value in `config` (a ConfigDict or dict)."""
  out = []
  for key in config.keys():
    value, path = config[key], f"{prefix}{key}"
    out += leaf_paths(value, path + ".") if _is_dict(value) and len(value) else [path]
  return out


def _level_names(node, path: str, open_paths) -> list[str]:
  names = []
  for key in sorted(node.keys()):
    sub = f"{path}.{key}" if path else key
    if _is_open(sub, open_paths):
      names.append(f"{sub}.<option>" if sub.endswith("options") else f"{sub}.<key>")
    elif _is_dict(node[key]):
      names.append(f"{sub}.<key>")
    else:
      names.append(sub)
  return names


def check_keys(config, schema, *, open_paths: Sequence[str] = (), path: str = "") -> None:
  """Every key of `config` must be one of `schema` (recursively).

  Args:
    config: the config to check (ConfigDict or dict).
    schema: a config with every allowed key.
    open_paths: fnmatch patterns of dotted paths whose children are not checked
      (e.g. "pool_options", "pools.*.options").
    path: the dotted path of `config` inside the whole config ("" at the top).

  Raises:
    ConfigError: naming the unknown key (its dotted path), the valid keys at its
      level and the closest valid key.
  """
  for key in config.keys():
    full = f"{path}.{key}" if path else key
    if key in ALWAYS_ALLOWED:
      continue
    if key not in schema:
      choices = _level_names(schema, path, open_paths)
      prefix = f"{path}." if path else ""
      match = suggest(key, list(schema.keys()))
      match = prefix + match if match else suggest(key, leaf_paths(schema, prefix))
      text = f"; did you mean {match!r}?" if match else ";"
      raise ConfigError(f"unknown config key {full!r}{text} valid keys: {', '.join(choices)}")
    if _is_open(full, open_paths):
      continue
    if _is_dict(schema[key]) and _is_dict(config[key]) and len(schema[key]):
      check_keys(config[key], schema[key], open_paths=open_paths, path=full)


def check_override_args(argv: Sequence[str], config, *, name="config", open_paths=()) -> None:
  """Each `--<name>.a.b=value` in `argv` must name a field of `config`, or a child
  of one of `open_paths`. Raises ConfigError naming the argument (see check_keys)."""
  prefixes = (f"--{name}.", f"-{name}.", f"--no{name}.")
  for arg in argv[1:]:
    if not arg.startswith(prefixes):
      continue
    path = arg.split("=", 1)[0].split(".", 1)[1]
    node, walked = config, ""
    for part in path.split("."):
      if _is_open(walked, open_paths) and walked:
        break
      if not _is_dict(node) or part not in node:
        here = node if _is_dict(node) else {}
        choices = _level_names(here, walked, open_paths) if here else []
        prefix = f"{walked}." if walked else ""
        match = suggest(part, list(here.keys()))
        match = prefix + match if match else suggest(path, leaf_paths(config))
        text = f"; did you mean {match!r}?" if match else ";"
        where = f"config.{walked}" if walked else "config"
        valid = f" valid keys: {', '.join(choices)}" if choices else f" {where} has no fields"
        raise ConfigError(f"unknown config key {path!r} in {arg!r}{text}{valid}")
      node = node[part]
      walked = f"{walked}.{part}" if walked else part


def pool_options(name: str) -> list[str]:
  """The options of pool `name` that a config may set: those of its NNX module."""
  from jaxpool import registry

  # The context options (rngs, num_features) are the model's to give, not a config's.
  return [o for o in registry.info(name)["nnx_options"] if o not in registry.CONTEXT_OPTIONS]


def check_pool(name, options: Mapping | None = None, *, where: str = "config.pool") -> None:
  """`name` must be a registered pool (looked up now) and `options` its options.

  Raises:
    ConfigError: naming the unknown pool or option, the valid ones and the closest.
  """
  from jaxpool import registry

  names = registry.names()
  if name not in names:
    raise unknown("pool", name, names, where=where)
  valid = pool_options(name)
  for key in options or {}:
    if key not in valid:
      raise ConfigError(
        f"{where}={name!r}: unknown pool option {key!r}{hint(key, valid)} options of "
        f"{name!r}: {', '.join(valid)}"
      )


def check_choice(what: str, got, choices: Sequence[str], *, where: str) -> None:
  """Raises ConfigError (see `unknown`) unless `got` is one of `choices`."""
  if got not in choices:
    raise unknown(what, got, list(choices), where=where)


# --------------------------------------------------------------------------- logs


class LibraryInfoFilter:
  """Drops INFO lines of checkpointing and dataset libraries (dozens per epoch) so
  that a run's own log lines stay readable; warnings and errors still pass."""

  _NOISY = (
    f"{os.sep}orbax{os.sep}",
    f"{os.sep}tensorflow_datasets{os.sep}",
    f"{os.sep}etils{os.sep}",
  )

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or not any(s in record.pathname for s in self._NOISY)


def quiet_library_logs() -> None:
  """Installs `LibraryInfoFilter` on absl's logger (once)."""
  from absl import logging

  logger = logging.get_absl_logger()
  if not any(isinstance(f, LibraryInfoFilter) for f in logger.filters):
    logger.addFilter(LibraryInfoFilter())


# ------------------------------------------------------------------------- errors

# Full, read-only, no permission, over quota, or a file where a folder must be.
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR}
_DISK_TEXTS = {
  "No space left on device": errno.ENOSPC,
  "Read-only file system": errno.EROFS,
  "Permission denied": errno.EACCES,
  "Disk quota exceeded": errno.EDQUOT,
  "Not a directory": errno.ENOTDIR,
}


def disk_cause(error: BaseException) -> str | None:
  """ "No space left on device" (etc.) when `error` or an error it came from is a
  disk-full, read-only or permission failure (also when a library put the OSError's
  text into a message of its own); else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
      return os.strerror(error.errno)
    for text in _DISK_TEXTS:
      if text in str(error):
        return text
    error = error.__cause__ or error.__context__
  return None


def squeeze(text: str, limit: int) -> str:
  """`text` with its whitespace runs as single spaces, cut to `limit` characters."""
  text = " ".join(str(text).split())
  return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(error: BaseException, limit: int = 2000) -> str:
  """The message of `error` on one line (its type name first unless it is one of
  ours), at most `limit` characters."""
  from absl import flags

  text = " ".join(str(error).split())
  from absl import app

  ours = any(c.__name__ in _USER_MESSAGE_CLASSES for c in type(error).__mro__)
  if not (ours or isinstance(error, (*_USER_MESSAGES, flags.Error, app.UsageError))) or not text:
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
  return squeeze(text, limit)


def fail(prog: str, message: str, code: int) -> None:
  """Prints `prog: error: message` on stderr and exits with `code`."""
  sys.stdout.flush()
  print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def _innermost_config_error(error: BaseException) -> BaseException:
  """config_flags re-raises a config file's ValueError with its traceback in the
  message; absl wraps that again: the first error of the chain says what is wrong."""
  seen = set()
  while id(error) not in seen:
    seen.add(id(error))
    inner = error.__cause__ or error.__context__
    if inner is None:
      break
    error = inner
  return error


def _config_spec(argv: Sequence[str], name: str, default: str | None) -> str | None:
  for i, arg in enumerate(argv):
    for flag in (f"--{name}", f"-{name}"):
      if arg.startswith(flag + "="):
        return arg.split("=", 1)[1]
      if arg == flag and i + 1 < len(argv):
        return argv[i + 1]
  return default


def load_config_file(spec: str):
  """`get_config(arg)` of the config file `path[:arg]`, as `--config=spec` loads it."""
  import importlib.util

  path, *arg = spec.split(":", 1)
  module_spec = importlib.util.spec_from_file_location("_jaxpool_cli_config", path)
  if module_spec is None or module_spec.loader is None:
    raise FileNotFoundError(path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(*arg)


def check_argv_overrides(argv: Sequence[str], *, config_default=None, open_paths=()) -> None:
  """Loads the `--config` file of `argv` (else `config_default`) and checks every
  `--config.a.b=value` override of `argv` against it (`check_override_args`).
  A file that does not load is left to the flag parsing to report."""
  if not any(a.startswith(("--config.", "-config.", "--noconfig.")) for a in argv[1:]):
    return
  spec = _config_spec(argv, "config", config_default)
  if not spec:
    return
  try:
    config = load_config_file(spec)
  except Exception:  # pylint: disable=broad-except
    return
  if _is_dict(config):
    check_override_args(argv, config, open_paths=open_paths)


def _flag_error(prog: str, argv: Sequence[str], error: BaseException) -> None:
  if os.environ.get(TRACEBACK_ENV):
    raise error
  inner = _innermost_config_error(error)
  if inner is not error and "Error whilst parsing config file" in str(error):
    message = f"{argv_config(argv)}: {one_line(inner)}"
  else:
    message = one_line(error)
  fail(prog, message, 2)


# What a bad command line raises while the flags are defined (a config file's
# default is loaded then) or parsed.
_FLAG_ERRORS = (AttributeError, KeyError, TypeError, ValueError)


def argv_config(argv: Sequence[str]) -> str:
  spec = _config_spec(argv, "config", None)
  return f"--config={spec}" if spec else "--config"


def expected_errors() -> tuple[type[BaseException], ...]:
  """The errors that `run` reports in one line: bad input, data, disk, checkpoint
  and numerical failures (RuntimeError covers XLA's and the data/checkpoint ones)."""
  from absl import app

  return (ValueError, TypeError, KeyError, OSError, RuntimeError, ArithmeticError, app.UsageError)


def run(
  main: Callable[[list[str]], int | None],
  *,
  prog: str,
  define_flags: Callable[[], object],
  config_default: str | None = None,
  open_paths: Sequence[str] = (),
  argv: Sequence[str] | None = None,
) -> None:
  """Defines the flags and runs `absl.app.run(main)`, with one-line errors (see the
  module docstring).

  Args:
    main: the program's main(argv); its return value is the exit code.
    prog: the name printed before each error ("train", "compare", ...).
    define_flags: defines the program's flags (config_flags loads a default
      config file, with the command line's overrides, right then).
    config_default: the `--config` flag's default spec, for the override check.
    open_paths: config paths whose children overrides may add (pool options).
    argv: the command line; default `sys.argv`.
  """
  from absl import app
  from absl import flags

  argv = list(sys.argv if argv is None else argv)
  try:
    check_argv_overrides(argv, config_default=config_default, open_paths=open_paths)
    define_flags()
  except (ConfigError, flags.Error, *_FLAG_ERRORS) as e:
    _flag_error(prog, argv, e)

  def parse(args):
    try:
      return flags.FLAGS(list(args))
    except (flags.Error, *_FLAG_ERRORS) as e:
      _flag_error(prog, args, e)

  def guarded(args):
    try:
      return main(args)
    except KeyboardInterrupt:
      fail(prog, "interrupted", 130)
    except expected_errors() as e:
      if os.environ.get(TRACEBACK_ENV):
        raise
      fail(prog, one_line(e), 2 if isinstance(e, ConfigError) else 1)

  app.run(guarded, argv=argv, flags_parser=parse)
