"""A/B experiment statistics from per-arm sufficient statistics (n, sums, sums of squares).

Every comparison is treatment against control for one metric, from :class:`ArmData`:

* Means: Welch's t-test (Welch 1947), which does not assume equal variances; the
  absolute interval uses the Welch-Satterthwaite degrees of freedom.
* Conversions: the two-proportion z-test with the pooled proportion for the p-value
  (the variance under the null of no difference) and the unpooled (Wald) variance for the
  interval of the difference.
* Relative lift ``treatment / control - 1``: its interval by the delta method (Deng,
  Knoblich and Lu 2018, "Applying the Delta Method in Metric Analytics", KDD), with
  ``Var ~ s_t^2 / (n_t m_c^2) + m_t^2 s_c^2 / (n_c m_c^4)`` and the normal quantile.
* CUPED (Deng, Xu, Kohavi and Walker 2013, "Improving the Sensitivity of Online
  Controlled Experiments by Utilizing Pre-Experiment Data", WSDM): each subject's value
  ``y`` is adjusted by its pre-period covariate ``x`` as ``y - theta (x - mean x)``, with
  ``theta = cov(y, x) / var(x)`` pooled over all arms. The adjustment is unbiased (the
  covariate predates the assignment) and cuts the variance by about ``rho^2``, the
  squared correlation of ``y`` and ``x``.
* Sequential testing: the normal-mixture mSPRT (Johari, Pekelis and Walsh 2017,
  "Peeking at A/B Tests", KDD; Johari, Koomen, Pekelis and Walsh 2022, "Always Valid
  Inference", Operations Research 70(3)). Its p-values and confidence sequences stay valid
  however often the results are looked at, at the price of wider intervals than a single
  look's. For a lift estimate ``d`` of variance ``V`` and a normal mixing distribution of
  variance ``tau^2`` the likelihood ratio is
  ``sqrt(V / (V + tau^2)) exp(tau^2 d^2 / (2 V (V + tau^2)))``, the p-value its inverse
  (capped at 1) and the confidence sequence
  ``d +- sqrt(2 V (V + tau^2) / tau^2 (log(1 / alpha) + log((V + tau^2) / V) / 2))``.
  ``tau^2`` is the variance ``V`` would have at the planned sample size ``N``:
  ``tau^2 = V n / N`` for ``n`` subjects so far, a constant as ``V`` shrinks like ``1 / n``
  (with ``V`` estimated, up to that estimate's noise). The sequence is tightest around
  ``N``; without a plan ``N`` is 20,000 (10,000 per arm). Each p-value is valid at its own
  look; the running minimum over looks is valid too. The relative lift's sequence uses its
  delta-method variance the same way.
* Multiple comparisons: Holm's step-down adjustment (Holm 1979, "A Simple Sequentially
  Rejective Multiple Test Procedure", Scandinavian Journal of Statistics 6(2)), which
  controls the family-wise error rate under any dependence.
* Sample ratio mismatch: Pearson's chi-square goodness-of-fit test of the arms' subject
  counts against their configured weights (Fabijan et al. 2019, "Diagnosing Sample Ratio
  Mismatch in Online Controlled Experiments", KDD).

The minimum detectable effect and the power are those of the fixed-horizon two-sided
normal test at the current sample size and 80 % power, also in sequential mode (where the
mixture test needs somewhat more subjects for the same power).

With CUPED the Welch degrees of freedom ignore the one spent on ``theta`` (negligible at
the sizes CUPED is for), and conversions use the normal test on the adjusted values,
which are no longer 0 or 1.

The Student t and chi-square tails come from mpmath's regularized incomplete beta and
gamma functions; the t quantile is the Cornish-Fisher expansion (Abramowitz and Stegun
26.7.5) polished by bracketed Newton steps on that tail. Two-sided t tails below 1e-20 with
``t^2 < df`` are a conservative bound within 3 % (mpmath's series take seconds there), and
beyond 1e8 degrees of freedom the t is the normal (within 1e-8).

Nothing here is NaN or infinite: whatever cannot be computed is ``None`` (or a p-value of
1.0), so results serialise to strict JSON; sums too large for double precision arithmetic
(around 1e150 and up) raise ValueError instead.
"""

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from statistics import NormalDist
from typing import Literal

# unused-ignore: a project may also silence the missing stubs in its mypy configuration.
import mpmath  # type: ignore[import-untyped, unused-ignore]

MetricKind = Literal["conversion", "mean"]

_STANDARD_NORMAL = NormalDist()
_Z_POWER_80 = _STANDARD_NORMAL.inv_cdf(0.8)
_SQRT2 = math.sqrt(2.0)

# mpmath's functions raise and restore their context's precision while they run, so two
# threads in one context at once could leave it at the wrong precision: this module has a
# context of its own (never the process-wide mpmath.mp other code may tune) and a lock.
# Thirty digits keep ``1 - I_y(1/2, df/2)``, the t tail near the centre, exact to about
# 1e-30 absolute, so tails far below double precision's 1e-16 keep their relative digits.
_MP = mpmath.MPContext()
_MP.dps = 30
_MP_LOCK = threading.Lock()

# Beyond this many degrees of freedom the Student t tail differs from the normal's by less
# than 1e-8 (the first-order term is phi(t) (t^3 + t) / (4 df)), below any decision.
_NORMAL_DF = 1e8
# Sums are accumulated in double precision, so a centred sum of squares smaller than this
# share of the raw one is rounding noise: the values are constant. Without the floor a
# constant metric whose means differ by an ulp would look infinitely significant.
_CANCELLATION_FLOOR = 1e-12
# t tails below this come from a bound within 3 % (see _t_two_sided_p): far below any
# decision, and where mpmath's series slows down to seconds.
_TINY_P_VALUE = 1e-20
_OVERFLOW = "the arms' sums are too large to compare in double precision"
# The default planned size for the mixing variance (10,000 subjects per arm).
_DEFAULT_PLANNED_SAMPLE_SIZE = 20_000


@dataclass(frozen=True)
class ArmData:
    """Sufficient statistics of one arm for one metric, per exposed subject.

    ``y`` is the subject's metric value in the experiment (for a conversion 0 or 1, so
    ``sum_y2`` is ignored there: ``y^2 = y``); ``x`` is the subject's pre-period covariate
    for CUPED (leave its sums at 0 without one).
    """

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float = 0.0
    sum_x2: float = 0.0
    sum_xy: float = 0.0

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"an arm's subject count n cannot be negative, got {self.n}")
        for field in fields(self):
            value = getattr(self, field.name)
            if not math.isfinite(value):
                raise ValueError(f"ArmData.{field.name} must be finite, got {value}")
        if self.sum_y2 < 0 or self.sum_x2 < 0:
            raise ValueError("ArmData's sums of squares (sum_y2, sum_x2) cannot be negative")


@dataclass(frozen=True)
class Comparison:
    """Treatment against control for one metric.

    When the lift's variance is zero or cannot be estimated (an arm with fewer than two
    subjects for a mean, or none for a conversion), the test is not computable: the
    p-value is 1.0 (a conversion's pooled test may still give one), the absolute interval
    collapses to the point estimate, the relative one too (or is None when it cannot be
    estimated), and ``minimum_detectable_effect`` and ``power`` are None. So
    ``minimum_detectable_effect is None`` tells that the intervals carry no information.
    """

    # The conversion rate or the mean per subject (CUPED-adjusted with CUPED).
    control_mean: float
    treatment_mean: float
    absolute_lift: float
    absolute_ci: tuple[float, float]
    # None when the control mean is 0.
    relative_lift: float | None
    relative_ci: tuple[float, float] | None
    p_value: float
    # Absolute, at 80 % power and ``alpha``, at the current sample size.
    minimum_detectable_effect: float | None
    # The power to detect ``target_relative_lift`` at the current sample size.
    power: float | None
    # CUPED: 1 - Var(adjusted lift) / Var(unadjusted lift); None without CUPED.
    variance_reduction: float | None


@dataclass(frozen=True)
class SignificanceTest:
    """A test statistic, its degrees of freedom (None for a normal one) and p-value."""

    statistic: float
    df: float | None
    p_value: float


@dataclass(frozen=True)
class _ArmEstimate:
    """One arm's mean and per-subject variance (None when it cannot be estimated)."""

    n: int
    mean: float
    variance: float | None


# Distributions


def normal_two_sided_p(z: float) -> float:
    """``P(|Z| >= |z|)`` for a standard normal Z (erfc keeps far tails' relative digits)."""
    return math.erfc(abs(z) / _SQRT2)


def normal_upper_quantile(tail: float) -> float:
    """The z with ``P(Z > z) = tail``, from the lower tail so that tiny tails stay exact."""
    return -_STANDARD_NORMAL.inv_cdf(tail)


def _t_two_sided_p(t_abs: float, df: float) -> float:
    """``P(|T| >= t_abs)`` for Student's t with ``df`` degrees of freedom."""
    if df > _NORMAL_DF:
        return normal_two_sided_p(t_abs)
    if t_abs * t_abs >= df:
        # x = df / (df + t^2) <= 1/2, where the series for I_x(df/2, 1/2) converges fast.
        with _MP_LOCK:
            t_squared = _MP.mpf(t_abs) ** 2
            tail = _MP.betainc(df / 2, 0.5, 0, df / (df + t_squared), regularized=True)
            return _probability(float(tail))
    if t_abs > 8 and df > 1 and (bound := 2 * _student_t_tail_bound(t_abs, df)) < _TINY_P_VALUE:
        # Far out but still within t^2 < df: 1 - I_y below cannot resolve such a tail and
        # its series takes ever longer (seconds at df = 1e7, t = 300), while the bound is
        # within 3 % of the tail there.
        return bound
    # Near the centre I_x converges slowly for x near 1; its complement 1 - I_y(1/2, df/2),
    # y = t^2 / (df + t^2), does not, and 30 digits keep the difference exact.
    with _MP_LOCK:
        t_squared = _MP.mpf(t_abs) ** 2
        tail = 1 - _MP.betainc(0.5, df / 2, 0, t_squared / (df + t_squared), regularized=True)
        return _probability(float(tail))


def _student_t_tail_bound(t: float, df: float) -> float:
    """An upper bound of ``P(T > t)`` for ``t > 0``, ``df > 1``: ``f(t) (df + t^2) / ((df - 1) t)``.

    Its derivative is below ``-f(t)``, the tail's, and both vanish at infinity; the ratio to
    the tail tends to 1 as t and df grow (below 1.03 from t = 8 with df >= 100).
    """
    return _student_t_pdf(t, df) * (df + t * t) / ((df - 1) * t)


def _probability(value: float) -> float:
    # A NaN must not slip through the clamp as 0 (max(0.0, nan) is 0.0).
    if math.isnan(value):
        raise ValueError("a probability came out undefined (NaN)")
    return min(1.0, max(0.0, value))


def student_t_sf(t: float, df: float) -> float:
    """``P(T > t)`` for Student's t with ``df > 0`` degrees of freedom."""
    _check_df(df)
    half_tail = _t_two_sided_p(abs(t), df) / 2
    return half_tail if t >= 0 else 1.0 - half_tail


def _student_t_pdf(t: float, df: float) -> float:
    log_scale = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_scale - (df + 1) / 2 * math.log1p(t * t / df))


def _student_t_upper_quantile(tail: float, df: float) -> float:
    """The t with ``P(T > t) = tail`` for ``0 < tail < 1/2``."""
    z = normal_upper_quantile(tail)
    if df > _NORMAL_DF:
        return z
    z2 = z * z
    # Cornish-Fisher expansion of the t quantile in powers of 1/df (Abramowitz and Stegun
    # 26.7.5): within 1e-11 from 1000 degrees of freedom, so one Newton step confirms it.
    guess = z + (
        (z2 + 1) * z / 4 / df
        + ((5 * z2 + 16) * z2 + 3) * z / 96 / df**2
        + (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384 / df**3
        + ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160 / df**4
    )
    # The t tail is heavier than the normal's, so the root lies above z: z brackets it from
    # below, and the first point found beyond it from above.
    low, high = z, math.inf
    t = max(guess, z)
    for _ in range(200):
        excess = _t_two_sided_p(t, df) / 2 - tail
        if excess > 0:
            low = max(low, t)
        else:
            high = min(high, t)
        density = _student_t_pdf(t, df)
        # The tail is convex above 0, so from below Newton approaches the root without
        # passing it; from above it may land below `low`, and then bisection takes over.
        candidate = t + excess / density if density > 0 else math.inf
        if not low <= candidate <= high:
            candidate = (low + high) / 2 if math.isfinite(high) else 2 * max(t, 1.0)
        if abs(candidate - t) <= 1e-13 * abs(t):
            return candidate
        t = candidate
    return t


def student_t_ppf(probability: float, df: float) -> float:
    """The t with ``P(T <= t) = probability`` (Student's t, ``df > 0``)."""
    _check_df(df)
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if probability == 0.5:
        return 0.0
    if probability > 0.5:
        return _student_t_upper_quantile(1.0 - probability, df)
    return -_student_t_upper_quantile(probability, df)


def chi_square_sf(statistic: float, df: float) -> float:
    """``P(X >= statistic)`` for a chi-square X with ``df > 0`` degrees of freedom."""
    _check_df(df)
    if statistic <= 0:
        return 1.0
    with _MP_LOCK:
        return _probability(float(_MP.gammainc(df / 2, statistic / 2, _MP.inf, regularized=True)))


# Tests and estimates


def _centred_sum_of_squares(n: int, total: float, sum_of_squares: float) -> float:
    """``sum (v - mean)^2`` from the raw sums, without the cancellation of ``n mean^2``."""
    centred = sum_of_squares - total * (total / n)
    if not math.isfinite(centred):
        raise ValueError(_OVERFLOW)
    if centred <= _CANCELLATION_FLOOR * sum_of_squares:
        return 0.0
    return centred


def _centred_cross_product(n: int, sum_x: float, sum_y: float, sum_xy: float) -> float:
    """``sum (x - mean x)(y - mean y)`` from the raw sums."""
    return sum_xy - sum_x * (sum_y / n)


def _mean_estimate(arm: ArmData) -> _ArmEstimate:
    if arm.n == 0:
        return _ArmEstimate(n=0, mean=0.0, variance=None)
    mean = arm.sum_y / arm.n
    if arm.n < 2:
        return _ArmEstimate(n=arm.n, mean=mean, variance=None)
    variance = _centred_sum_of_squares(arm.n, arm.sum_y, arm.sum_y2) / (arm.n - 1)
    return _ArmEstimate(n=arm.n, mean=mean, variance=variance)


def _proportion_estimate(arm: ArmData) -> _ArmEstimate:
    if arm.n == 0:
        return _ArmEstimate(n=0, mean=0.0, variance=None)
    rate = arm.sum_y / arm.n
    return _ArmEstimate(n=arm.n, mean=rate, variance=rate * (1.0 - rate))


def _lift_variance(control: _ArmEstimate, treatment: _ArmEstimate) -> float | None:
    if control.variance is None or treatment.variance is None:
        return None
    return control.variance / control.n + treatment.variance / treatment.n


def _welch(control: _ArmEstimate, treatment: _ArmEstimate) -> SignificanceTest:
    lift_variance = _lift_variance(control, treatment)
    if lift_variance is None or lift_variance <= 0:
        return SignificanceTest(statistic=0.0, df=None, p_value=1.0)
    df = _welch_satterthwaite_df(control, treatment)
    statistic = (treatment.mean - control.mean) / math.sqrt(lift_variance)
    return SignificanceTest(statistic=statistic, df=df, p_value=_t_two_sided_p(abs(statistic), df))


def _welch_satterthwaite_df(control: _ArmEstimate, treatment: _ArmEstimate) -> float:
    # Only called with both variances known and at least one positive.
    control_share = (control.variance or 0.0) / control.n
    treatment_share = (treatment.variance or 0.0) / treatment.n
    # Scaled by the larger share, so that tiny variances' squares cannot underflow to 0.
    scale = max(control_share, treatment_share)
    control_share, treatment_share = control_share / scale, treatment_share / scale
    return (control_share + treatment_share) ** 2 / (
        control_share**2 / (control.n - 1) + treatment_share**2 / (treatment.n - 1)
    )


def welch_t_test(control: ArmData, treatment: ArmData) -> SignificanceTest:
    """Welch's t-test of equal means (two-sided), as ``scipy.stats.ttest_ind(equal_var=False)``.

    Not computable (an arm with fewer than two subjects, or no variance in either) gives
    a statistic of 0, no degrees of freedom and a p-value of 1.
    """
    return _welch(_mean_estimate(control), _mean_estimate(treatment))


def two_proportion_z_test(control: ArmData, treatment: ArmData) -> SignificanceTest:
    """The pooled two-proportion z-test (two-sided) of treatment's rate against control's.

    As ``statsmodels.stats.proportion.proportions_ztest([x_t, x_c], [n_t, n_c])``; an
    empty arm, or the same rate of 0 or 1 in both, gives a statistic of 0 and a p-value of 1.
    """
    _check_conversions(control)
    _check_conversions(treatment)
    if control.n == 0 or treatment.n == 0:
        return SignificanceTest(statistic=0.0, df=None, p_value=1.0)
    pooled = (control.sum_y + treatment.sum_y) / (control.n + treatment.n)
    null_variance = pooled * (1.0 - pooled) * (1.0 / control.n + 1.0 / treatment.n)
    if null_variance <= 0:
        return SignificanceTest(statistic=0.0, df=None, p_value=1.0)
    difference = treatment.sum_y / treatment.n - control.sum_y / control.n
    statistic = difference / math.sqrt(null_variance)
    return SignificanceTest(statistic=statistic, df=None, p_value=normal_two_sided_p(statistic))


def cuped_theta(arms: Sequence[ArmData]) -> float | None:
    """CUPED's ``theta = cov(y, x) / var(x)`` over the subjects of all ``arms`` together.

    None when the covariate does not vary or there are fewer than two subjects: there is
    nothing to adjust by.
    """
    n = sum(arm.n for arm in arms)
    if n < 2:
        return None
    try:
        sum_x = math.fsum(arm.sum_x for arm in arms)
        sum_y = math.fsum(arm.sum_y for arm in arms)
        sum_x2 = math.fsum(arm.sum_x2 for arm in arms)
        sum_xy = math.fsum(arm.sum_xy for arm in arms)
    except OverflowError as error:
        raise ValueError(_OVERFLOW) from error
    ss_x = _centred_sum_of_squares(n, sum_x, sum_x2)
    if ss_x <= 0:
        return None
    theta = _centred_cross_product(n, sum_x, sum_y, sum_xy) / ss_x
    if not math.isfinite(theta):
        raise ValueError(_OVERFLOW)
    return theta


def _cuped_estimate(arm: ArmData, theta: float, pooled_mean_x: float) -> _ArmEstimate:
    """The arm's CUPED-adjusted mean and per-subject variance of ``y - theta x``."""
    if arm.n == 0:
        return _ArmEstimate(n=0, mean=0.0, variance=None)
    mean_x = arm.sum_x / arm.n
    mean = arm.sum_y / arm.n - theta * (mean_x - pooled_mean_x)
    if arm.n < 2:
        return _ArmEstimate(n=arm.n, mean=mean, variance=None)
    ss_y = _centred_sum_of_squares(arm.n, arm.sum_y, arm.sum_y2)
    ss_x = _centred_sum_of_squares(arm.n, arm.sum_x, arm.sum_x2)
    ss_xy = _centred_cross_product(arm.n, arm.sum_x, arm.sum_y, arm.sum_xy)
    # The centred sum of squares of y - theta x, floored like any other against rounding.
    adjusted = ss_y - 2 * theta * ss_xy + theta * theta * ss_x
    if adjusted <= _CANCELLATION_FLOOR * (ss_y + theta * theta * ss_x):
        adjusted = 0.0
    return _ArmEstimate(n=arm.n, mean=mean, variance=adjusted / (arm.n - 1))


def sample_ratio_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Pearson's chi-square goodness-of-fit p-value of the arms' counts under their weights.

    The weights are normalised (any positive scale); ``df = len(counts) - 1``. No subjects
    at all gives 1.0.
    """
    if len(counts) != len(weights):
        raise ValueError(f"{len(counts)} counts but {len(weights)} weights: one per arm")
    if len(counts) < 2:
        raise ValueError("a sample ratio test needs at least two arms")
    for weight in weights:
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"arm weights must be positive and finite, got {weight}")
    for count in counts:
        if count < 0:
            raise ValueError(f"arm counts cannot be negative, got {count}")
    total = sum(counts)
    if total == 0:
        return 1.0
    weight_sum = math.fsum(weights)
    statistic = 0.0
    for count, weight in zip(counts, weights, strict=True):
        expected = total * weight / weight_sum
        deviation = count - expected
        statistic += deviation * deviation / expected
    return chi_square_sf(statistic, len(counts) - 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order, monotone and at most 1.

    As ``statsmodels.stats.multitest.multipletests(p_values, method="holm")[1]``.
    """
    for p_value in p_values:
        if not 0.0 <= p_value <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], got {p_value}")
    count = len(p_values)
    order = sorted(range(count), key=lambda index: p_values[index])
    adjusted = [0.0] * count
    running_max = 0.0
    for rank, index in enumerate(order):
        # The k-th smallest is tested at alpha / (count - k); the running maximum keeps
        # the adjusted values in the order of the raw ones.
        running_max = max(running_max, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running_max
    return adjusted


# The comparison


def compare(
    control: ArmData,
    treatment: ArmData,
    kind: MetricKind,
    *,
    alpha: float = 0.05,
    cuped: bool = False,
    sequential: bool = False,
    planned_sample_size: int | None = None,
    target_relative_lift: float | None = None,
    cuped_theta: float | None = None,
) -> Comparison:
    """Treatment against control for one metric (see the module's docstring for methods).

    ``cuped`` adjusts by the pre-period covariate with ``cuped_theta`` (computed over the
    two arms when None; pass the one over all arms of a multi-arm experiment). Without a
    varying covariate there is nothing to adjust: the comparison is the plain one with a
    ``variance_reduction`` of 0. ``cuped_theta`` is ignored without ``cuped``.

    ``sequential`` gives always-valid p-values and confidence sequences. Their mixing
    variance is the variance the estimate would have at ``planned_sample_size`` subjects
    (both arms together; 20,000 when None): the sequence is tightest around that size.
    """
    _check_options(kind, alpha, planned_sample_size, target_relative_lift, cuped_theta)
    if kind == "conversion":
        _check_conversions(control)
        _check_conversions(treatment)
        # Conversions are 0 or 1, so y^2 = y whatever sum_y2 the caller filled in.
        control = replace(control, sum_y2=control.sum_y)
        treatment = replace(treatment, sum_y2=treatment.sum_y)
    try:
        return _compare(
            control,
            treatment,
            kind,
            alpha=alpha,
            cuped=cuped,
            sequential=sequential,
            planned_sample_size=planned_sample_size,
            target_relative_lift=target_relative_lift,
            theta=cuped_theta,
        )
    except OverflowError as error:
        raise ValueError(_OVERFLOW) from error


def _compare(
    control: ArmData,
    treatment: ArmData,
    kind: MetricKind,
    *,
    alpha: float,
    cuped: bool,
    sequential: bool,
    planned_sample_size: int | None,
    target_relative_lift: float | None,
    theta: float | None,
) -> Comparison:
    estimator = _proportion_estimate if kind == "conversion" else _mean_estimate
    plain_control, plain_treatment = estimator(control), estimator(treatment)
    if not cuped:
        theta = None
    elif theta is None:
        theta = cuped_theta((control, treatment))
    variance_reduction: float | None = None
    if theta is None:
        control_estimate, treatment_estimate = plain_control, plain_treatment
        if cuped:
            variance_reduction = 0.0
    else:
        pooled_mean_x = (control.sum_x + treatment.sum_x) / max(1, control.n + treatment.n)
        control_estimate = _cuped_estimate(control, theta, pooled_mean_x)
        treatment_estimate = _cuped_estimate(treatment, theta, pooled_mean_x)
        variance_reduction = _variance_reduction(
            _lift_variance(control_estimate, treatment_estimate),
            _lift_variance(_mean_estimate(control), _mean_estimate(treatment)),
        )

    lift = treatment_estimate.mean - control_estimate.mean
    lift_variance = _lift_variance(control_estimate, treatment_estimate)
    if not math.isfinite(lift) or (lift_variance is not None and not math.isfinite(lift_variance)):
        raise ValueError(_OVERFLOW)
    total = control.n + treatment.n
    # Mixing variance over the estimate's variance: tau^2 = V n / N (V shrinks as 1/n).
    mixing_ratio = total / (planned_sample_size or _DEFAULT_PLANNED_SAMPLE_SIZE)
    z_critical = normal_upper_quantile(alpha / 2)

    if lift_variance is None or lift_variance <= 0:
        absolute_ci = (lift, lift)
        if kind == "conversion" and theta is None and not sequential:
            p_value = two_proportion_z_test(control, treatment).p_value
        else:
            p_value = 1.0
    elif sequential:
        p_value = _msprt_p_value(lift, lift_variance, mixing_ratio)
        half_width = _confidence_sequence_half_width(lift_variance, mixing_ratio, alpha)
        absolute_ci = (lift - half_width, lift + half_width)
    elif kind == "mean":
        welch = _welch(control_estimate, treatment_estimate)
        p_value = welch.p_value
        t_critical = _student_t_upper_quantile(alpha / 2, welch.df or math.inf)
        half_width = t_critical * math.sqrt(lift_variance)
        absolute_ci = (lift - half_width, lift + half_width)
    else:
        if theta is None:
            p_value = two_proportion_z_test(control, treatment).p_value
        else:
            # CUPED-adjusted values are no longer 0/1: the plain normal test on them.
            p_value = normal_two_sided_p(lift / math.sqrt(lift_variance))
        half_width = z_critical * math.sqrt(lift_variance)
        absolute_ci = (lift - half_width, lift + half_width)

    relative_lift, relative_ci = _relative(
        control_estimate, treatment_estimate, alpha, z_critical, sequential, mixing_ratio
    )
    minimum_detectable_effect = None
    power = None
    if lift_variance is not None and lift_variance > 0:
        standard_error = math.sqrt(lift_variance)
        minimum_detectable_effect = (z_critical + _Z_POWER_80) * standard_error
        if target_relative_lift is not None and control_estimate.mean != 0:
            shift = abs(target_relative_lift * control_estimate.mean) / standard_error
            power = _STANDARD_NORMAL.cdf(shift - z_critical) + _STANDARD_NORMAL.cdf(
                -shift - z_critical
            )

    return _finite(
        Comparison(
            control_mean=control_estimate.mean,
            treatment_mean=treatment_estimate.mean,
            absolute_lift=lift,
            absolute_ci=absolute_ci,
            relative_lift=relative_lift,
            relative_ci=relative_ci,
            p_value=_probability(p_value),
            minimum_detectable_effect=minimum_detectable_effect,
            power=power,
            variance_reduction=variance_reduction,
        )
    )


def _relative(
    control: _ArmEstimate,
    treatment: _ArmEstimate,
    alpha: float,
    z_critical: float,
    sequential: bool,
    mixing_ratio: float,
) -> tuple[float | None, tuple[float, float] | None]:
    """The relative lift and its delta-method interval (or confidence sequence)."""
    if control.mean == 0 or control.n == 0 or treatment.n == 0:
        return None, None
    ratio = treatment.mean / control.mean
    if not math.isfinite(ratio):
        # A control mean so close to 0 that the ratio overflows: as good as 0.
        return None, None
    relative_lift = ratio - 1.0
    if control.variance is None or treatment.variance is None:
        return relative_lift, None
    # Var(m_t / m_c) by the delta method, written as (s_t^2/n_t + r^2 s_c^2/n_c) / m_c^2
    # (divided by m_c twice: its square could underflow to 0).
    treatment_share = treatment.variance / treatment.n
    control_share = control.variance / control.n
    variance = (treatment_share + ratio * ratio * control_share) / control.mean / control.mean
    if not math.isfinite(variance):
        return relative_lift, None
    if variance <= 0:
        return relative_lift, (relative_lift, relative_lift)
    if sequential:
        half_width = _confidence_sequence_half_width(variance, mixing_ratio, alpha)
    else:
        half_width = z_critical * math.sqrt(variance)
    return relative_lift, (relative_lift - half_width, relative_lift + half_width)


def _msprt_p_value(lift: float, variance: float, mixing_ratio: float) -> float:
    """The mixture SPRT's always-valid p-value, ``min(1, 1 / likelihood ratio)``.

    With ``tau^2 = mixing_ratio V`` the log likelihood ratio is
    ``-log(1 + k) / 2 + k z^2 / (2 (1 + k))`` for ``z^2 = d^2 / V``: in logs, it cannot
    overflow for a large z.
    """
    z_squared = lift * lift / variance
    log_ratio = -0.5 * math.log1p(mixing_ratio) + mixing_ratio * z_squared / (
        2 * (1 + mixing_ratio)
    )
    return 1.0 if log_ratio <= 0 else math.exp(-log_ratio)


def _confidence_sequence_half_width(variance: float, mixing_ratio: float, alpha: float) -> float:
    """The mSPRT confidence sequence's half width, for ``tau^2 = mixing_ratio V``."""
    return math.sqrt(
        variance
        * (1 + mixing_ratio)
        / mixing_ratio
        * (2 * math.log(1 / alpha) + math.log1p(mixing_ratio))
    )


def _variance_reduction(adjusted: float | None, unadjusted: float | None) -> float | None:
    if adjusted is None or unadjusted is None or not 0 < unadjusted < math.inf:
        return None
    reduction = 1.0 - adjusted / unadjusted
    return reduction if math.isfinite(reduction) else None


# Checks


def _check_df(df: float) -> None:
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")


def _check_conversions(arm: ArmData) -> None:
    if not 0 <= arm.sum_y <= arm.n:
        raise ValueError(
            f"a conversion arm's sum_y counts converted subjects: 0 <= {arm.sum_y} <= n={arm.n}"
        )


def _check_options(
    kind: str,
    alpha: float,
    planned_sample_size: int | None,
    target_relative_lift: float | None,
    theta: float | None,
) -> None:
    if kind not in ("conversion", "mean"):
        raise ValueError(f"kind must be 'conversion' or 'mean', got {kind!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if planned_sample_size is not None and planned_sample_size < 1:
        raise ValueError(f"planned_sample_size must be positive, got {planned_sample_size}")
    if target_relative_lift is not None and not math.isfinite(target_relative_lift):
        raise ValueError(f"target_relative_lift must be finite, got {target_relative_lift}")
    if theta is not None and not math.isfinite(theta):
        raise ValueError(f"cuped_theta must be finite, got {theta}")


def _finite(comparison: Comparison) -> Comparison:
    """The comparison, or a ValueError if a value overflowed double precision."""
    values: list[float | None] = [
        comparison.control_mean,
        comparison.treatment_mean,
        comparison.absolute_lift,
        *comparison.absolute_ci,
        comparison.relative_lift,
        *(comparison.relative_ci or ()),
        comparison.p_value,
        comparison.minimum_detectable_effect,
        comparison.power,
        comparison.variance_reduction,
    ]
    if any(value is not None and not math.isfinite(value) for value in values):
        raise ValueError(_OVERFLOW)
    return comparison
