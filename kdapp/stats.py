"""How far to trust a gain: 95% intervals for one run's gain and for a mean over seeds.

One run's KD gain is the difference of two accuracies on the same test digits; its interval is
binomial on the test size (`gain_interval`). Several seeds' gains give a mean whose interval is
Student's t on their spread (`mean_interval`): with 3 seeds t is 4.30, not 1.96, which is why a
mean of three looks less sure than one might hope. A gain is beyond the noise when its interval
excludes 0 (`clears`).
"""
import math

# Two-sided 95% quantiles of Student's t by degrees of freedom; 1.96 (the normal's) beyond 30.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def gain_interval(student_acc, baseline_acc, test_samples):
    """Half-width of the 95% interval of (student - baseline) accuracy, binomial on the test size:
    1.96 * sqrt(p1(1-p1)/n + p2(1-p2)/n), treating the two accuracies as independent (conservative
    for two models scored on the same digits)."""
    var = (student_acc * (1 - student_acc) + baseline_acc * (1 - baseline_acc)) / test_samples
    return 1.96 * var ** 0.5


def t95(df):
    """Student's t quantile for a two-sided 95% interval (the next smaller tabled df: conservative)."""
    if df > 30:
        return 1.96
    return T95[max(k for k in T95 if k <= df)]


def mean_interval(values):
    """(mean, half-width of its 95% interval) of independent samples, e.g. one gain per seed.
    With one sample the half-width is None: one seed says nothing about seed-to-seed spread."""
    values = list(values)
    if not values:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, t95(len(values) - 1) * sd / math.sqrt(len(values))


def clears(mean, half_width):
    """True when the interval mean ± half_width excludes 0: the effect is beyond the noise."""
    return half_width is not None and abs(mean) > half_width


def apart(a, b):
    """Whether two (mean, half) differ beyond the noise: the difference's interval, taken as
    sqrt(h1² + h2²) for independent means, excludes 0."""
    if a[1] is None or b[1] is None:
        return False
    return abs(a[0] - b[0]) > math.hypot(a[1], b[1])
