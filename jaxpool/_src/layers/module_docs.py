"""The option lists of the Linen and NNX modules' docstrings, written once for both APIs.

A module's options are its pooling function's options, documented once in the
function's docstring, plus a few of its own (its parameters, its rng, train/eval),
described once here in `OPTIONS`. :func:`document` appends to a module's docstring
the list of its options (Linen: ``Attributes:``, NNX: ``Args:``): its own from
`OPTIONS`, the function's by reference. It runs when the class is defined and fails
there if an option has no description, so the list cannot fall behind the class.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from typing import Callable
from typing import Optional
from typing import TypeVar

_T = TypeVar("_T", bound=type)

_RANDOM_RNGS = (
  "an ``nnx.Rngs`` (its ``'pooling'`` stream, or its default stream, is forked) or an "
  "``nnx.RngStream``; may be None if every training call passes ``rngs=``."
)
_CONSTANT_RNGS = "accepted for uniformity (the initialisation is constant)."

OPTIONS: dict[str, str | dict[str, str]] = {
  # An entry "Class.option" is that class's, "option" every other class's; an entry
  # {"linen": ..., "nnx": ...} differs between the APIs.
  "deterministic": {
    "linen": "the mode (True: evaluation, no key), or None to take it from the call: "
    "exactly one of the attribute and the call's ``deterministic=`` is given, as "
    "``nn.Dropout``.",
    "nnx": "the initial mode (False: training, as ``nnx.Dropout``), switched by "
    "``model.train()`` / ``model.eval()``; the call's ``deterministic=`` takes precedence.",
  },
  "rngs": "an ``nnx.Rngs``: its ``'params'`` stream initialises the parameters.",
  "StochasticPool.rngs": _RANDOM_RNGS,
  "FractionalMaxPool.rngs": _RANDOM_RNGS,
  "MixedPool.rngs": _RANDOM_RNGS + " Only used with ``stochastic=True``.",
  "LpPool.rngs": _CONSTANT_RNGS,
  "GeMPool.rngs": _CONSTANT_RNGS,
  "num_features": "the number of channels C of the inputs (NNX creates per-channel "
  "parameters eagerly).",
  "LpPool.learn_p": r"learn ``p`` as the parameter ``raw_p``, :math:`p = 1 + "
  r"\mathrm{softplus}(raw)`, which keeps ``p > 1``; ``p`` is then its initial value "
  "and must be finite and > 1.",
  "GeMPool.p": "the initial exponent (3, as the paper), or the fixed one if not learnt.",
  "GeMPool.learn_p": "learn ``p`` as the scalar parameter ``p``, stored as is (as the "
  "paper's code).",
  "FractionalMaxPool.eval_seed": "the seed of the evaluation key: evaluation draws the windows of "
  "``jax.random.key(eval_seed)``, the same at every call (PyTorch has no eval mode).",
  "MixedPool.granularity": "the shape of the parameter ``alpha_logit``: ``()`` "
  '("layer"), ``(C,)`` ("channel") or one weight per output location shared by the '
  'channels ("region"): ``(*out_spatial, 1)`` channels-last, ``out_spatial`` '
  "channels-first.",
  "MixedPool.alpha_init": r"the initial mixing weight, in (0, 1): :math:`\alpha = \sigma(\ell)` "
  r"with the parameter ``alpha_logit`` :math:`\ell`, which starts at its logit.",
  "MixedPool.stochastic": "Yu et al. 2014's random alpha instead of a learnt one (no "
  "parameters): in training 0 or 1 with probability 1/2, one draw per call for the "
  "whole layer and batch; in evaluation 1/2, the expectation of the draw.",
  "MixedPool.region_shape": {
    "linen": '("region" only, optional) the output spatial shape, checked against the input.',
    "nnx": '("region" only, required: NNX builds eagerly) the output spatial shape.',
  },
  "granularity": 'the last dim of the filters: 1 ("layer", shared by the channels) '
  'or C ("channel").',
  "GatedPool.gate_init": "initializer of the gate mask ``gate``, ``(*window_shape, 1 "
  r"or C)`` (zeros: :math:`g = 1/2`, the even mix, as MixedPool's start).",
  "TreePool.levels": "tree depth, >= 2 (2: two leaves and one gate, Lee et al.'s choice): "
  "``n = 2**(levels-1)`` leaves (parameter ``leaves``, ``(n, *window_shape, 1 or "
  "C)``) and ``n - 1`` gates (``gates``, ``(n - 1, *window_shape, 1 or C)``, "
  "breadth-first).",
  "TreePool.leaf_init": "initializer of the leaves (None: normal with std ``1/sqrt(window "
  "size)``, so that the leaves differ and the gates get a gradient).",
  "TreePool.gate_init": "initializer of the gates (zeros: every node starts as the "
  "even mix of its children).",
  "LIPLogits.num_spatial_dims": "the number of spatial dims (the convolution's rank).",
  "LIPLogits.channel_axis": "-1 (channels last) or 1 (channels first).",
  "kernel_size": "width of the logit convolution in every spatial dim.",
  "coeff": "the logits' upper bound (12, as the paper's code).",
  "conv_general_dilated": "the logit convolution's ``lax.conv_general_dilated``, "
  "handed to flax's Conv: a drop-in with other derivative rules may replace it.",
}


def _own(cls: type, option: str, api: str) -> Optional[str]:
  text = OPTIONS.get(f"{cls.__name__}.{option}", OPTIONS.get(option))
  return text[api] if isinstance(text, dict) else text


def _options(cls: type) -> list[str]:
  """The constructor's options: Linen's dataclass fields, NNX's ``__init__`` arguments."""
  if dataclasses.is_dataclass(cls):
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")]
  return list(inspect.signature(cls.__init__).parameters)[1:]


def _entry(names: str, text: str) -> str:
  # The names stay on the entry's first line (napoleon reads them there), however long.
  return textwrap.fill(
    text,
    88,
    initial_indent=f"  {names}: ",
    subsequent_indent="    ",
    break_long_words=False,
    break_on_hyphens=False,
  )


def document(fn: Optional[Callable], api: str) -> Callable[[_T], _T]:
  """Decorator: append the options of a module class (pooling function `fn`) to its docstring.

  Each option is described by `OPTIONS` or, failing that, by `fn`'s docstring (an
  option of the function, same name and meaning); one in neither raises a TypeError.
  """

  def decorate(cls: _T) -> _T:
    own, shared = [], []
    params = inspect.signature(fn).parameters if fn is not None else {}
    for option in _options(cls):
      text = _own(cls, option, api)
      if text is not None:
        own.append(_entry(option, text))
      elif option in params:
        shared.append(option)
      else:
        raise TypeError(f"document: {cls.__name__}.{option} has no description.")
    if shared:
      name = getattr(fn, "__name__", fn)
      own.append(_entry(", ".join(shared), f"as in :func:`jaxpool.{name}`."))
    doc = inspect.cleandoc(cls.__doc__ or "")
    head, example, tail = doc.partition("\nExample:\n")  # the list goes before the example
    section = "Attributes:" if api == "linen" else "Args:"
    cls.__doc__ = f"{head.rstrip()}\n\n{section}\n" + "\n".join(own) + "\n"
    cls.__doc__ += f"{example}{tail}"
    return cls

  return decorate
