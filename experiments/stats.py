r"""Paired comparisons of a study's pools against a reference pool, and their summary.

Every seed of a study trains every pool from the same initial weights on the same
data order (experiments/train.py), so the runs of one seed form a pair with the
reference pool's run of that seed. For a pool with paired final test errors
:math:`e_s` (the pool) and :math:`r_s` (the reference) over :math:`n` seeds:

.. math::

    d_s = e_s - r_s, \qquad \bar d = \frac{1}{n}\sum_s d_s, \qquad
    \bar d \pm t_{0.975,\,n-1}\,\frac{s_d}{\sqrt n}

with :math:`s_d` the sample standard deviation (ddof 1) of the :math:`d_s`: the 95%
Student-t confidence interval of the mean paired difference. A pool is
*distinguishable* from the reference when its interval excludes 0. The intervals are
per pool, not corrected for the number of pools compared.

Example:
    >>> d = paired_difference({0: 1.4, 1: 1.5, 2: 1.3}, {0: 1.2, 1: 1.2, 2: 1.1})
    >>> round(d.mean, 3), round(d.low, 3), round(d.high, 3), d.excludes_zero
    (0.233, 0.09, 0.377, True)
"""

from __future__ import annotations

import dataclasses
import math
import statistics

CONFIDENCE = 0.95


def t_cdf(t: float, df: int) -> float:
  r"""Student's t distribution function :math:`P(T \le t)` for an integer `df` >= 1.

  The closed forms for integer degrees of freedom (Abramowitz & Stegun 26.7.3-4),
  with :math:`\theta = \arctan(t / \sqrt{\nu})`: a finite series in
  :math:`\cos^2\theta`, odd and even :math:`\nu` apart.

  >>> round(t_cdf(12.706, 1), 4), round(t_cdf(0.0, 5), 4)
  (0.975, 0.5)
  """
  if not isinstance(df, int) or df < 1:
    raise ValueError(f"t_cdf: df must be an int >= 1, got {df!r}")
  theta = math.atan(t / math.sqrt(df))
  s, c2 = math.sin(theta), math.cos(theta) ** 2
  if df % 2:  # odd: A = (2/pi) (theta + sin cos (1 + 2/3 c2 + 2.4/3.5 c2^2 + ...))
    term, total = 1.0, 1.0 if df > 1 else 0.0
    for k in range(1, (df - 1) // 2):
      term *= c2 * (2 * k) / (2 * k + 1)
      total += term
    a = 2.0 / math.pi * (theta + s * math.cos(theta) * total)
  else:  # even: A = sin (1 + 1/2 c2 + 1.3/2.4 c2^2 + ...)
    term, total = 1.0, 1.0
    for k in range(1, df // 2):
      term *= c2 * (2 * k - 1) / (2 * k)
      total += term
    a = s * total
  return 0.5 + 0.5 * a  # A(t) = P(|T| <= |t|) carries t's sign here.


def t_quantile(p: float, df: int) -> float:
  """The `p` quantile of Student's t with integer `df` (bisection on `t_cdf`).

  >>> round(t_quantile(0.975, 2), 3), round(t_quantile(0.975, 4), 3)
  (4.303, 2.776)
  """
  if not 0.0 < p < 1.0:
    raise ValueError(f"t_quantile: p must lie in (0, 1), got {p!r}")
  if p < 0.5:
    return -t_quantile(1.0 - p, df)
  lo, hi = 0.0, 1.0
  while t_cdf(hi, df) < p:
    hi *= 2.0
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    if t_cdf(mid, df) < p:
      lo = mid
    else:
      hi = mid
    if hi - lo < 1e-12 * max(1.0, hi):
      break
  return 0.5 * (lo + hi)


@dataclasses.dataclass(frozen=True)
class PairedDifference:
  """A pool's final test error minus the reference's, paired by seed (same unit)."""

  n: int  # Seeds with both runs completed.
  mean: float | None  # Mean paired difference; None without pairs.
  half_width: float | None  # t * s_d / sqrt(n); None for fewer than 2 pairs.

  @property
  def low(self) -> float | None:
    return None if self.half_width is None else self.mean - self.half_width

  @property
  def high(self) -> float | None:
    return None if self.half_width is None else self.mean + self.half_width

  @property
  def excludes_zero(self) -> bool | None:
    """Whether the interval excludes 0 (None without an interval)."""
    if self.half_width is None:
      return None
    return self.low > 0.0 or self.high < 0.0


def paired_difference(errors: dict, reference: dict, confidence: float = CONFIDENCE):
  """`PairedDifference` of `errors` against `reference` (both seed -> value).

  Seeds missing from either side (failed or pending runs) are left out.
  """
  seeds = sorted(set(errors) & set(reference))
  diffs = [errors[s] - reference[s] for s in seeds]
  n = len(diffs)
  if n == 0:
    return PairedDifference(0, None, None)
  mean = sum(diffs) / n
  if n < 2:
    return PairedDifference(n, mean, None)
  sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
  t = t_quantile(0.5 + confidence / 2.0, n - 1)
  return PairedDifference(n, mean, t * sd / math.sqrt(n))


def _pp(v: float) -> str:
  return f"{v:+.2f}"


def _names(labels) -> str:
  labels = [f"`{x}`" for x in labels]
  if len(labels) <= 2:
    return " and ".join(labels)
  return ", ".join(labels[:-1]) + " and " + labels[-1]


def summary(reference: str, ref_mean, diffs: dict, *, budget: str, num_seeds: int) -> str:
  """One paragraph, in words, on which pools are distinguishable from `reference`.

  Args:
    reference: the reference pool's label.
    ref_mean: its mean final test error in % (None if it has no completed seed).
    diffs: label -> `PairedDifference` (in percentage points) of every other pool.
    budget: the training budget in words, e.g. "5 epochs on 60,000 training images"
      (the paragraph opens "With <budget> and <num_seeds> seeds, ...").
    num_seeds: the study's number of seeds.

  Returns:
    The paragraph (generated from the numbers; no hand-written claims).
  """
  if ref_mean is None:
    return (
      f"No paired comparison: the reference pool `{reference}` has no completed run at "
      f"this budget ({budget})."
    )
  worse = sorted((k for k, d in diffs.items() if d.excludes_zero and d.mean > 0), key=_by(diffs))
  better = sorted((k for k, d in diffs.items() if d.excludes_zero and d.mean < 0), key=_by(diffs))
  same = sorted((k for k, d in diffs.items() if d.excludes_zero is False), key=_by(diffs))
  unpaired = sorted(k for k, d in diffs.items() if d.excludes_zero is None)

  def listed(labels):
    return ", ".join(
      f"`{k}` ({_pp(diffs[k].mean)} pp, 95% CI {_pp(diffs[k].low)} to {_pp(diffs[k].high)})"
      for k in labels
    )

  n = len(diffs)
  out = [
    f"With {budget} and {num_seeds} seeds, `{reference}` reaches {ref_mean:.2f}% final test error."
  ]
  if better or worse:
    parts = []
    if better:
      parts.append(f"lower error than `{reference}`: {listed(better)}")
    if worse:
      parts.append(f"higher error: {listed(worse)}")
    count = len(better) + len(worse)
    out.append(
      f"{count} of the {n} other pools {'differs' if count == 1 else 'differ'} from it by "
      f"more than the seeds' spread (the paired 95% interval excludes 0); " + "; ".join(parts) + "."
    )
  if len(diffs) == 1 and same:  # One other pool, and it is not distinguishable.
    out.append(
      f"{_names(same)} is not distinguishable from `{reference}`: its paired 95% "
      "interval includes 0."
    )
  elif same and not (better or worse):
    out.append(
      f"None of the {n} other pools is distinguishable from `{reference}`: every paired "
      "95% interval includes 0."
    )
  elif same:
    verb = "is" if len(same) == 1 else "are"
    out.append(
      f"{_names(same)} {verb} not distinguishable from `{reference}` (the interval includes 0)."
    )
  widths = [2 * d.half_width for d in diffs.values() if d.half_width is not None]
  if same and widths:
    width = statistics.median(widths)
    what = "intervals are" if len(widths) > 1 else "interval is"
    median = " (median)" if len(widths) > 1 else ""
    out.append(
      f"The paired {what} {width:.2f} pp wide{median}: differences under about "
      f"{width / 2:.2f} pp are not resolved with this many seeds."
    )
  if unpaired:
    out.append(
      f"{_names(unpaired)} {'has' if len(unpaired) == 1 else 'have'} fewer than 2 seeds "
      f"paired with `{reference}`: no interval."
    )
  if n > 1 and any(d.half_width is not None for d in diffs.values()):
    out.append(
      f"Each interval is at 95% on its own, not corrected for the {n} comparisons: "
      "about one in twenty excludes 0 by chance."
    )
  return " ".join(out)


def _by(diffs):
  return lambda k: (diffs[k].mean, k)
