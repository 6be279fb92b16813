"""experiments/stats.py: the paired t interval (by hand, t quantiles from a t-table, and
scipy) and the generated summary's wording on constructed results."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments import stats

# Two-sided 95% quantiles t_{0.975, df} from a printed t-table.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 9: 2.262, 29: 2.045}


@pytest.mark.parametrize("df,t", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_table(df, t):
  assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=6e-4)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7, 10, 30, 101])
def test_t_quantile_and_cdf_match_scipy(df):
  for p in (0.6, 0.9, 0.975, 0.995):
    assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9)
    assert stats.t_quantile(1 - p, df) == pytest.approx(scipy_stats.t.ppf(1 - p, df), rel=1e-9)
  for t in (-4.0, -0.3, 0.0, 0.7, 2.5, 30.0):
    assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-12)


def test_paired_interval_by_hand_three_seeds():
  pool = {0: 1.40, 1: 1.55, 2: 1.30}
  ref = {0: 1.20, 1: 1.25, 2: 1.15}
  # d = 0.20, 0.30, 0.15: mean 0.65 / 3; deviations -1/60, 5/60, -4/60.
  mean = 0.65 / 3
  sd = math.sqrt(((1 / 60) ** 2 + (5 / 60) ** 2 + (4 / 60) ** 2) / 2)
  half = 4.303 * sd / math.sqrt(3)
  d = stats.paired_difference(pool, ref)
  assert d.n == 3
  assert d.mean == pytest.approx(mean, abs=1e-12)
  assert d.half_width == pytest.approx(half, rel=2e-4)  # 4.303 is rounded in the table.
  assert d.low == pytest.approx(mean - half, abs=1e-4)
  assert d.high == pytest.approx(mean + half, abs=1e-4)
  assert d.low == pytest.approx(0.02692, abs=1e-4)  # 0.21667 - 0.18975
  assert d.excludes_zero is True


def test_paired_interval_five_seeds_including_zero_and_unpaired_seeds():
  pool = {0: 1.0, 1: 1.3, 2: 0.9, 3: 1.2, 4: 1.1, 7: 5.0}  # Seed 7: no reference run.
  ref = {0: 1.1, 1: 1.1, 2: 1.0, 3: 1.0, 4: 1.2, 8: 0.1}
  diffs = [-0.1, 0.2, -0.1, 0.2, -0.1]
  mean = sum(diffs) / 5
  sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 4)
  d = stats.paired_difference(pool, ref)
  assert d.n == 5
  assert d.mean == pytest.approx(mean)
  assert d.half_width == pytest.approx(2.776 * sd / math.sqrt(5), rel=2e-4)
  assert d.low < 0 < d.high and d.excludes_zero is False


def test_one_or_no_pair_has_no_interval():
  one = stats.paired_difference({0: 1.5, 1: 1.2}, {0: 1.0})
  assert one.n == 1 and one.mean == pytest.approx(0.5) and one.half_width is None
  assert one.excludes_zero is None and one.low is None
  none = stats.paired_difference({0: 1.5}, {1: 1.0})
  assert none.n == 0 and none.mean is None


def test_identical_differences_give_a_zero_width_interval():
  d = stats.paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
  assert d.mean == pytest.approx(1.0) and d.half_width == pytest.approx(0.0)
  assert d.excludes_zero is True


D = stats.PairedDifference
BUDGET = "5 epochs on 60,000 training images"


def test_summary_names_better_worse_and_indistinguishable_pools():
  text = stats.summary(
    "max",
    1.32,
    {
      "avg": D(3, 0.12, 0.09),  # [+0.03, +0.21]: worse.
      "lip": D(3, -0.06, 0.04),  # [-0.10, -0.02]: better.
      "l2": D(3, -0.03, 0.10),  # Includes 0.
      "tree": D(3, 0.14, 0.30),  # Includes 0.
      "blur": D(1, 0.10, None),  # One seed: no interval.
    },
    budget=BUDGET,
    num_seeds=3,
  )
  assert text.startswith(f"With {BUDGET} and 3 seeds, `max` reaches 1.32% final test error.")
  assert "2 of the 5 other pools differ from it" in text
  assert "lower error than `max`: `lip` (-0.06 pp, 95% CI -0.10 to -0.02)" in text
  assert "higher error: `avg` (+0.12 pp, 95% CI +0.03 to +0.21)" in text
  assert "`l2` and `tree` are not distinguishable from `max`" in text
  assert "`blur` has fewer than 2 seeds paired with `max`: no interval." in text
  # Median width of the 4 intervals: widths 0.08, 0.18, 0.20, 0.60 -> 0.19.
  assert "0.19 pp wide (median)" in text and "under about 0.10 pp" in text
  assert "not corrected for the 5 comparisons" in text
  assert "\n" not in text  # One paragraph.


def test_summary_when_nothing_is_distinguishable():
  # In the order of their mean differences, as a results table lists them.
  text = stats.summary(
    "max", 1.3, {"l2": D(3, -0.1, 0.3), "avg": D(3, 0.05, 0.2)}, budget=BUDGET, num_seeds=3
  )
  assert "None of the 2 other pools is distinguishable from `max`" in text
  assert "differ from it" not in text and "higher error" not in text


def test_summary_with_one_other_pool():
  text = stats.summary("max", 1.3, {"avg": D(3, 0.05, 0.2)}, budget=BUDGET, num_seeds=3)
  assert "`avg` is not distinguishable from `max`: its paired 95% interval includes 0." in text
  assert "None of" not in text and "comparisons" not in text
  assert "The paired interval is 0.40 pp wide: differences under about 0.20 pp" in text


def test_summary_when_everything_is_distinguishable():
  text = stats.summary("max", 1.3, {"avg": D(3, 0.5, 0.1)}, budget=BUDGET, num_seeds=3)
  assert "1 of the 1 other pools differs from it" in text
  assert "higher error: `avg` (+0.50 pp, 95% CI +0.40 to +0.60)" in text
  assert "not distinguishable" not in text and "None of" not in text


def test_summary_without_a_reference_run():
  text = stats.summary("max", None, {"avg": D(0, None, None)}, budget=BUDGET, num_seeds=3)
  assert text.startswith("No paired comparison: the reference pool `max` has no completed run")


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="df"):
    stats.t_cdf(1.0, 0)
  with pytest.raises(ValueError, match="p must"):
    stats.t_quantile(1.0, 3)


def test_paired_difference_is_scipy_paired_t_interval():
  rng = np.random.default_rng(0)
  for n in (2, 3, 7):
    base = rng.uniform(0.4, 0.8, n)
    other = base + rng.normal(0.1, 0.05, n)
    d = stats.paired_difference(dict(enumerate(other)), dict(enumerate(base)))
    ref = scipy_stats.ttest_rel(other, base).confidence_interval(0.95)
    assert d.n == n
    assert d.mean == pytest.approx(np.mean(other - base))
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high))


def test_paired_difference_uses_only_common_seeds():
  d = stats.paired_difference({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.5, 1: 1.0, 2: 7.0})
  assert (d.n, d.mean) == (2, pytest.approx(0.75))
  one = stats.paired_difference({0: 1.0}, {0: 0.25, 1: 0.0})
  assert (one.n, one.mean, one.low, one.high) == (1, 0.75, None, None)
  assert stats.paired_difference({}, {0: 1.0}).mean is None
