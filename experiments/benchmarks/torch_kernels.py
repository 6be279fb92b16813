"""PyTorch's pooling kernels beside jaxpool's (channels-last; CUDA beside a JAX GPU)."""

from __future__ import annotations

import os

import jax

from experiments import timing
from experiments.benchmarks.cases import Case


def _import_torch():
  """The torch module, or None where it is not installed.

  PyTorch's OpenMP threads would otherwise spin for a while after each call (GNU
  OpenMP's default), taking the cores from the JAX call timed next: passive
  waiting is set before torch loads its OpenMP runtime (a value already in the
  environment wins).
  """
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  try:
    import torch  # noqa: PLC0415 - optional
  except ImportError:
    return None
  return torch


def torch_device() -> str:
  """Where PyTorch runs beside JAX: "cuda" when JAX runs on a GPU and torch sees one."""
  if jax.default_backend() != "gpu":
    return "cpu"
  torch = _import_torch()
  return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def _torch_input(torch, case: Case, device: str):
  """A random input of the case's shape and dtype, channels-last, requiring grad."""
  dtype = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
  }[case.dtype.name]
  b, *spatial, c = case.shape
  x = torch.randn(b, c, *spatial, dtype=dtype, device=device)
  if case.nd == 2:
    x = x.contiguous(memory_format=torch.channels_last)
  elif case.nd == 3:
    x = x.contiguous(memory_format=torch.channels_last_3d)
  return x.requires_grad_(True)


def _torch_pool(F, torch_key: str, case: Case):  # noqa: N803 - torch.nn.functional
  """PyTorch's pool for `torch_key` ("max", "avg", "lp<p>", "fractional") on the case,
  or None."""
  k, s, p = case.window, case.strides, case.torch_padding
  nd = case.nd
  if torch_key == "max":
    op = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    return lambda v: op(v, k, s, p)
  if torch_key == "avg":
    op = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    return lambda v: op(v, k, s, p)
  if torch_key.startswith("lp"):
    if p or nd == 3 and not hasattr(F, "lp_pool3d"):
      return None  # torch's lp_pool has no padding
    op = {1: F.lp_pool1d, 2: F.lp_pool2d, 3: getattr(F, "lp_pool3d", None)}[nd]
    norm = float(torch_key[2:])
    return lambda v: op(v, norm, k, s)
  if torch_key == "fractional" and nd in (2, 3):
    # 2-wide windows, output ratio 1/2: jaxpool's row of the same case; fresh
    # random samples every call, as a training step draws them.
    op = {2: F.fractional_max_pool2d, 3: F.fractional_max_pool3d}[nd]
    return lambda v: op(v, 2, output_ratio=(0.5,) * nd)
  return None


def torch_callables(torch_key: str | None, case: Case, threads: int, calls: int = 1):
  """PyTorch forward and forward+backward (channels-last), each `calls` times, or None.

  On `torch_device()`; CUDA work is synchronized after the last call, so a timed
  call measures the kernels, not only their launch.
  """
  if torch_key is None:
    return None
  torch = _import_torch()
  if torch is None:
    return None
  torch.set_num_threads(threads)
  device = torch_device()
  x = _torch_input(torch, case, device)
  fn = _torch_pool(torch.nn.functional, torch_key, case)
  if fn is None:
    return None
  with torch.no_grad():
    cot = torch.randn_like(fn(x))

  def fwd():
    with torch.no_grad():
      return fn(x)

  def fwd_bwd():
    x.grad = None
    out = fn(x)
    out.backward(cot)
    return x.grad

  def synchronized(f):
    def run():
      out = timing.repeated(f, calls)()
      if device == "cuda":
        torch.cuda.synchronize()
      return out

    return run

  return synchronized(fwd), synchronized(fwd_bwd)
