//! Honest uncertainty for contractor performance: exact Poisson intervals for rates, Wilson
//! intervals for proportions, and funnel-plot limits against the programme average
//! (Spiegelhalter 2005). Small numbers mislead; these say how much.

use statrs::distribution::{ChiSquared, ContinuousCDF, Discrete, DiscreteCDF, Poisson};

/// Two-sided 95%: the confidence of every interval Doorstep reports.
pub const CONFIDENCE_95: f64 = 0.95;
/// The "alert" funnel limit: about 2 standard deviations (two-sided 95%).
pub const ALERT_COVERAGE: f64 = 0.95;
/// The "alarm" funnel limit: about 3 standard deviations (two-sided 99.8%).
pub const ALARM_COVERAGE: f64 = 0.998;

/// A point estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The exact (Garwood) interval for a Poisson count: the counts, not yet divided by exposure.
/// `lower = χ²(α/2, 2x) / 2` (0 when x = 0) and `upper = χ²(1 − α/2, 2x + 2) / 2`.
pub fn garwood_count_interval(count: u64, confidence: f64) -> (f64, f64) {
    let alpha = 1.0 - confidence;
    let x = count as f64;
    let lower = if count == 0 {
        0.0
    } else {
        chi_squared_quantile(2.0 * x, alpha / 2.0) / 2.0
    };
    let upper = chi_squared_quantile(2.0 * x + 2.0, 1.0 - alpha / 2.0) / 2.0;
    (lower, upper)
}

/// A rate per `per` units of exposure (e.g. breaches per 100 visits) with its exact interval.
/// None when there is no exposure: no rate can be given.
pub fn poisson_rate(count: u64, exposure: f64, per: f64, confidence: f64) -> Option<Estimate> {
    if exposure <= 0.0 || !exposure.is_finite() {
        return None;
    }
    let (lower, upper) = garwood_count_interval(count, confidence);
    let scale = per / exposure;
    Some(Estimate {
        value: count as f64 * scale,
        lower: lower * scale,
        upper: upper * scale,
    })
}

/// The Wilson score interval for a proportion `successes / trials`. None when there are no trials.
pub fn wilson_proportion(successes: u64, trials: u64, confidence: f64) -> Option<Estimate> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = successes.min(trials) as f64 / n;
    let z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half_width = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    // At the edges the bound is exactly 0 or 1; rounding would otherwise leave a speck.
    let lower = if successes == 0 {
        0.0
    } else {
        (centre - half_width).max(0.0)
    };
    let upper = if successes >= trials {
        1.0
    } else {
        (centre + half_width).min(1.0)
    };
    Some(Estimate {
        value: p,
        lower,
        upper,
    })
}

/// Where a contractor sits on the funnel plot of rates against exposure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelStatus {
    /// Within the alert limits: consistent with the programme average.
    Within,
    /// Outside the ≈2 SD limits, above or below.
    AlertHigh,
    AlertLow,
    /// Outside the ≈3 SD limits, above or below.
    AlarmHigh,
    AlarmLow,
}

/// Funnel limits for one exposure, as rates per the same unit as the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunnelLimits {
    pub alert_lower: f64,
    pub alert_upper: f64,
    pub alarm_lower: f64,
    pub alarm_upper: f64,
}

/// The funnel limits around `target_rate` (events per unit of exposure) for `exposure` units,
/// from exact Poisson quantiles of the expected count, expressed per `per` units.
pub fn funnel_limits(target_rate: f64, exposure: f64, per: f64) -> Option<FunnelLimits> {
    if exposure <= 0.0 || target_rate < 0.0 || !target_rate.is_finite() {
        return None;
    }
    let expected = target_rate * exposure;
    let scale = per / exposure;
    let (alert_lower, alert_upper) = poisson_limits(expected, ALERT_COVERAGE);
    let (alarm_lower, alarm_upper) = poisson_limits(expected, ALARM_COVERAGE);
    Some(FunnelLimits {
        alert_lower: alert_lower * scale,
        alert_upper: alert_upper * scale,
        alarm_lower: alarm_lower * scale,
        alarm_upper: alarm_upper * scale,
    })
}

/// Classifies an observed count against the funnel of `target_rate` at `exposure`: a count is
/// outside a limit when a count at least that extreme has less than the limit's tail probability
/// under a Poisson with the programme's expected count.
pub fn funnel_status(count: u64, exposure: f64, target_rate: f64) -> FunnelStatus {
    let expected = target_rate * exposure;
    if expected <= 0.0 || !expected.is_finite() {
        // With no expected events, any event is unusual but no limit can be drawn; call it within
        // rather than raise an alarm from nothing.
        return FunnelStatus::Within;
    }
    let Ok(poisson) = Poisson::new(expected) else {
        return FunnelStatus::Within;
    };
    // P(X >= count) and P(X <= count).
    let upper_tail = if count == 0 {
        1.0
    } else {
        poisson.sf(count - 1)
    };
    let lower_tail = poisson.cdf(count);
    let alarm_tail = (1.0 - ALARM_COVERAGE) / 2.0;
    let alert_tail = (1.0 - ALERT_COVERAGE) / 2.0;
    if upper_tail < alarm_tail {
        FunnelStatus::AlarmHigh
    } else if lower_tail < alarm_tail {
        FunnelStatus::AlarmLow
    } else if upper_tail < alert_tail {
        FunnelStatus::AlertHigh
    } else if lower_tail < alert_tail {
        FunnelStatus::AlertLow
    } else {
        FunnelStatus::Within
    }
}

/// The funnel's limits as counts: under Poisson(`expected`), a count below `lower` or above
/// `upper` has less than the limit's tail probability, which is exactly when [`funnel_status`]
/// flags it, so a point drawn outside a line is always the point labelled outside it.
fn poisson_limits(expected: f64, coverage: f64) -> (f64, f64) {
    let Ok(poisson) = Poisson::new(expected) else {
        return (0.0, 0.0);
    };
    let tail = (1.0 - coverage) / 2.0;
    // The smallest count not flagged low, and the largest count not flagged high.
    let lower = poisson_quantile(&poisson, expected, tail);
    let upper = poisson_quantile(&poisson, expected, 1.0 - tail);
    (lower as f64, upper as f64)
}

/// Most steps [`poisson_quantile`] takes from its starting guess before it leaves the answer to
/// statrs' bisection: the normal approximation is within a few counts of the quantile.
const QUANTILE_STEPS: usize = 1_000;

/// The smallest count `k` with P(X <= k) >= `probability` for a Poisson with mean `mean`, which
/// is what statrs' `inverse_cdf` answers. That bisects, evaluating the CDF (an incomplete gamma
/// function, slower the larger the mean) twenty-odd times; the programme comparison draws four
/// limits per contractor, so its time grew with the size of the counts. This evaluates the CDF
/// once, at the normal approximation's guess, and steps from there with the probability mass
/// recurrence P(k + 1) = P(k) · mean / (k + 1).
fn poisson_quantile(poisson: &Poisson, mean: f64, probability: f64) -> u64 {
    let guess = (mean + normal_quantile(probability) * mean.sqrt()).floor();
    let mut k = if guess.is_finite() && guess > 0.0 {
        guess as u64
    } else {
        0
    };
    let mut cdf = poisson.cdf(k);
    let mut pmf = poisson.pmf(k);
    for _ in 0..QUANTILE_STEPS {
        if cdf >= probability {
            // Step down while the count below still reaches the probability.
            if k == 0 || cdf - pmf < probability {
                return k;
            }
            cdf -= pmf;
            pmf *= k as f64 / mean;
            k -= 1;
        } else {
            k += 1;
            pmf *= mean / k as f64;
            cdf += pmf;
        }
    }
    poisson.inverse_cdf(probability)
}

fn chi_squared_quantile(degrees_of_freedom: f64, probability: f64) -> f64 {
    ChiSquared::new(degrees_of_freedom)
        .map(|distribution| distribution.inverse_cdf(probability))
        .unwrap_or(f64::NAN)
}

fn normal_quantile(probability: f64) -> f64 {
    use statrs::distribution::Normal;
    Normal::new(0.0, 1.0)
        .map(|distribution| distribution.inverse_cdf(probability))
        .unwrap_or(f64::NAN)
}

/// The median of some values (the mean of the middle two for an even count); None when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// The median of integer values given as a histogram of `(value, how many)` in ascending order
/// of value: the same as [`median`] of the values listed out, without listing them.
pub fn median_of_counts(histogram: &[(i64, u64)]) -> Option<f64> {
    let total: u64 = histogram.iter().map(|(_, count)| count).sum();
    if total == 0 {
        return None;
    }
    // The values at 0-based ranks `lower` and `upper` of the sorted list (equal when odd).
    let upper = total / 2;
    let lower = if total.is_multiple_of(2) {
        upper - 1
    } else {
        upper
    };
    let value_at = |rank: u64| {
        let mut seen = 0;
        for (value, count) in histogram {
            seen += count;
            if rank < seen {
                return *value as f64;
            }
        }
        f64::NAN
    };
    Some((value_at(lower) + value_at(upper)) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_quantiles_equal_statrs_inverse_cdf() {
        let tails = [0.001, 0.025, 0.975, 0.999];
        let mut means = vec![0.0001, 0.02, 0.5, 1.0, 3.7, 20.0, 137.5, 1_362.4, 9_999.0];
        means.extend((1..200).map(|i| f64::from(i) * 7.3));
        for mean in means {
            let poisson = Poisson::new(mean).unwrap_or_else(|e| panic!("{e}"));
            for probability in tails {
                assert_eq!(
                    poisson_quantile(&poisson, mean, probability),
                    poisson.inverse_cdf(probability),
                    "mean {mean}, probability {probability}"
                );
            }
        }
    }

    #[test]
    fn median_of_counts_is_the_median_of_the_values_listed_out() {
        let histograms: [&[(i64, u64)]; 6] = [
            &[],
            &[(3, 1)],
            &[(1, 1), (4, 1)],
            &[(0, 2), (2, 1), (9, 4)],
            &[(0, 3), (5, 0), (7, 3)],
            &[(-1, 1), (2, 2), (3, 1), (10, 1)],
        ];
        for histogram in histograms {
            let mut listed: Vec<f64> = histogram
                .iter()
                .flat_map(|(value, count)| std::iter::repeat_n(*value as f64, *count as usize))
                .collect();
            assert_eq!(
                median_of_counts(histogram),
                median(&mut listed),
                "{histogram:?}"
            );
        }
    }

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn garwood_matches_published_values() {
        // Zero events: the upper 95% count is 3.689 (the "rule of three" refined).
        let (lower, upper) = garwood_count_interval(0, CONFIDENCE_95);
        assert_eq!(lower, 0.0);
        assert!(close(upper, 3.689, 0.001), "{upper}");
        // One event: 0.0253 to 5.572. Ten events: 4.795 to 18.39.
        let (lower, upper) = garwood_count_interval(1, CONFIDENCE_95);
        assert!(
            close(lower, 0.0253, 0.0001) && close(upper, 5.572, 0.001),
            "{lower} {upper}"
        );
        let (lower, upper) = garwood_count_interval(10, CONFIDENCE_95);
        assert!(
            close(lower, 4.795, 0.001) && close(upper, 18.39, 0.01),
            "{lower} {upper}"
        );
    }

    #[test]
    fn rates_per_hundred_visits() {
        let rate = poisson_rate(3, 600.0, 100.0, CONFIDENCE_95);
        let rate = rate.unwrap_or_else(|| panic!("exposure is positive"));
        assert!(close(rate.value, 0.5, 1e-12));
        assert!(rate.lower < rate.value && rate.value < rate.upper);
        // One breach in one visit is 100 per 100 visits, but the interval is huge.
        let tiny = poisson_rate(1, 1.0, 100.0, CONFIDENCE_95).unwrap_or_else(|| panic!("exposure"));
        assert!(tiny.upper > 500.0 && tiny.lower < 3.0);
        assert_eq!(poisson_rate(1, 0.0, 100.0, CONFIDENCE_95), None);
    }

    #[test]
    fn wilson_at_the_edges() {
        let none = wilson_proportion(0, 20, CONFIDENCE_95).unwrap_or_else(|| panic!("trials"));
        assert_eq!(none.value, 0.0);
        assert_eq!(none.lower, 0.0);
        assert!(close(none.upper, 0.1611, 0.0001), "{}", none.upper);
        let all = wilson_proportion(20, 20, CONFIDENCE_95).unwrap_or_else(|| panic!("trials"));
        assert_eq!(all.upper, 1.0);
        assert!(close(all.lower, 0.8389, 0.0001), "{}", all.lower);
        // A textbook value: 81 of 263, 0.2553 to 0.3662.
        let textbook =
            wilson_proportion(81, 263, CONFIDENCE_95).unwrap_or_else(|| panic!("trials"));
        assert!(close(textbook.lower, 0.2553, 0.0001) && close(textbook.upper, 0.3662, 0.0001));
        assert_eq!(wilson_proportion(0, 0, CONFIDENCE_95), None);
    }

    #[test]
    fn funnel_limits_narrow_with_exposure_and_classify_outliers() {
        // Programme average: 2 breaches per 100 visits.
        let target = 0.02;
        let small = funnel_limits(target, 50.0, 100.0).unwrap_or_else(|| panic!("limits"));
        let large = funnel_limits(target, 5_000.0, 100.0).unwrap_or_else(|| panic!("limits"));
        assert!(small.alert_upper > large.alert_upper);
        assert!(small.alarm_upper > small.alert_upper && small.alarm_lower <= small.alert_lower);
        assert!(large.alert_lower < 2.0 && 2.0 < large.alert_upper);
        // 30 in 1,000 against 20 expected is flagged, and lies above the drawn alert line.
        let limits = funnel_limits(target, 1_000.0, 100.0).unwrap_or_else(|| panic!("limits"));
        assert_eq!(funnel_status(30, 1_000.0, target), FunnelStatus::AlertHigh);
        assert!(3.0 > limits.alert_upper, "{limits:?}");
        // 1 breach in 1 visit: expected 0.02, P(X >= 1) ≈ 0.0198 < 0.025 → alert, not alarm.
        assert_eq!(funnel_status(1, 1.0, target), FunnelStatus::AlertHigh);
        // 100 breaches in 1,000 visits (expected 20) is far outside: alarm.
        assert_eq!(funnel_status(100, 1_000.0, target), FunnelStatus::AlarmHigh);
        // 20 in 1,000 is the average.
        assert_eq!(funnel_status(20, 1_000.0, target), FunnelStatus::Within);
        // None in 1,000 when 20 were expected is unusually good.
        assert_eq!(funnel_status(0, 1_000.0, target), FunnelStatus::AlarmLow);
    }

    #[test]
    fn the_drawn_lines_agree_with_the_status() {
        let target = 0.03;
        for visits in [10.0, 80.0, 400.0, 2_500.0] {
            let limits = funnel_limits(target, visits, 1.0).unwrap_or_else(|| panic!("limits"));
            for count in 0..(visits as u64 / 5 + 5) {
                let rate = count as f64 / visits;
                let status = funnel_status(count, visits, target);
                let flagged_high =
                    matches!(status, FunnelStatus::AlertHigh | FunnelStatus::AlarmHigh);
                let flagged_low = matches!(status, FunnelStatus::AlertLow | FunnelStatus::AlarmLow);
                assert_eq!(
                    flagged_high,
                    rate > limits.alert_upper,
                    "{count}/{visits}: {limits:?}"
                );
                assert_eq!(
                    flagged_low,
                    rate < limits.alert_lower,
                    "{count}/{visits}: {limits:?}"
                );
                let alarm_high = status == FunnelStatus::AlarmHigh;
                assert_eq!(
                    alarm_high,
                    rate > limits.alarm_upper,
                    "{count}/{visits}: {limits:?}"
                );
            }
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
