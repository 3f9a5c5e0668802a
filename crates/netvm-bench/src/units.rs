//! Parsing of command-line rates (bit/s) and durations.

use std::time::Duration;

use super::MAX_POINT;

/// Parses a rate in bit/s: digits with an optional fraction and an optional `K`, `M` or `G`
/// suffix (decimal: 10⁳, 10⁶, 10⁹), e.g. `10M`, `1.5G`, `970000000`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        Some('g' | 'G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let valid = !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && num.matches('.').count() <= 1;
    let value: f64 = if valid {
        num.parse().map_err(|_| format!("invalid rate \"{s}\""))?
    } else {
        return Err(format!(
            "invalid rate \"{s}\": expected e.g. 100M, 1.5G, 64000"
        ));
    };
    let bps = (value * mult).round();
    if !(1.0..=1e12).contains(&bps) {
        return Err(format!("rate \"{s}\" is outside 1 bit/s ..= 1 Tbit/s"));
    }
    Ok(bps as u64)
}

/// Parses a comma-separated list of rates.
pub fn parse_rates(s: &str) -> Result<Vec<u64>, String> {
    s.split(',').map(parse_rate).collect()
}

/// Parses a duration: a number with a unit `ms`, `s` or `m` (e.g. `500ms`, `2s`, `1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!(
            "invalid duration \"{s}\": expected e.g. 500ms, 2s, 1.5s, 1m"
        ));
    };
    let valid = !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && num.matches('.').count() <= 1;
    let v: f64 = if valid {
        num.parse()
            .map_err(|_| format!("invalid duration \"{s}\""))?
    } else {
        return Err(format!("invalid duration \"{s}\""));
    };
    let secs = v * scale;
    if secs > MAX_POINT.as_secs_f64() {
        return Err(format!("duration \"{s}\" is longer than {MAX_POINT:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rates("10M,100M,1G"),
            Ok(vec![10_000_000, 100_000_000, 1_000_000_000])
        );
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("64k"), Ok(64_000));
        assert_eq!(parse_rate("970000000"), Ok(970_000_000));
        for bad in ["", "M", "1.2.3M", "-5M", "10X", "0", "2000G", "1e6"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "2", "s", "-1s", "2h", "1..2s", "2days"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
