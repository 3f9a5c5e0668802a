//! RTT statistics exactly as ipbench's `latency_output` computes them: over integer microsecond
//! samples, integer mean, median = element `n/2` of the sorted samples, and standard deviation
//! = `sqrt` of the integer mean of squared deviations from the integer mean.

/// RTT summary in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RttStats {
    /// Smallest sample.
    pub min_us: u64,
    /// Integer mean.
    pub avg_us: u64,
    /// Largest sample.
    pub max_us: u64,
    /// Sorted sample at index `n/2`.
    pub median_us: u64,
    /// 99th percentile: the smallest sample at least 99% of the samples do not exceed
    /// (nearest rank, sorted index `ceil(0.99 n) - 1`). Not an ipbench column.
    pub p99_us: u64,
    /// `sqrt(floor(Σ(avg - x)² / n))`.
    pub stdev_us: f64,
    /// Number of samples.
    pub count: u64,
}

impl RttStats {
    /// Summarises `samples_us` (sorted in place). All zero when there are no samples (ipbench
    /// would divide by zero there).
    pub fn from_samples(samples_us: &mut [u64]) -> RttStats {
        let n = samples_us.len() as u128;
        if n == 0 {
            return RttStats::default();
        }
        samples_us.sort_unstable();
        let sum: u128 = samples_us.iter().map(|&x| u128::from(x)).sum();
        let avg = (sum / n) as u64;
        let sq: u128 = samples_us
            .iter()
            .map(|&x| {
                let d = u128::from(avg.abs_diff(x));
                d * d
            })
            .sum();
        RttStats {
            min_us: samples_us[0],
            avg_us: avg,
            max_us: samples_us[samples_us.len() - 1],
            median_us: samples_us[samples_us.len() / 2],
            p99_us: samples_us[(samples_us.len() * 99).div_ceil(100) - 1],
            stdev_us: ((sq / n) as f64).sqrt(),
            count: n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ipbench_integer_arithmetic() {
        let mut s = vec![10, 1, 4, 7];
        let st = RttStats::from_samples(&mut s);
        assert_eq!((st.min_us, st.max_us), (1, 10));
        // mean 22/4 = 5 (integer); median = sorted[2] = 7
        assert_eq!((st.avg_us, st.median_us), (5, 7));
        // deviations from 5: 16 + 1 + 4 + 25 = 46; 46/4 = 11; sqrt(11)
        assert!((st.stdev_us - 11f64.sqrt()).abs() < 1e-12);
        assert_eq!(st.p99_us, 10);
        let mut hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(RttStats::from_samples(&mut hundred).p99_us, 99);
        assert_eq!(RttStats::from_samples(&mut [5]).p99_us, 5);
        assert_eq!(RttStats::from_samples(&mut []), RttStats::default());
    }
}
