//! Go's number and duration formatting, as fortio's output uses it
//! (`fmt` verbs `%g`, `%.Ng`; `time.Duration.String`), so meshsim's
//! report reads byte for byte like fortio's. Rules from Go's
//! strconv/ftoa.go (`%e` when the exponent is < -4 or ≥ the precision —
//! 6 for the shortest form — trailing zeros dropped, exponents of at least
//! two digits) and time/time.go (`Duration.String`).

/// The significant digits of `v` (no trailing zeros) and the position of
/// the decimal point: `v = 0.DIGITS × 10^dp`. `prec` rounds to that many
/// digits; `None` is the shortest form that reads back as `v`.
fn digits(v: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    (d, exp + 1)
}

/// Go's `%g` (`prec: None`) and `%.Ng` (`prec: Some(N)`).
pub fn g(v: f64, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let neg = v.is_sign_negative() && v != 0.0;
    if v == 0.0 {
        return "0".into();
    }
    let (d, dp) = digits(v, prec);
    let nd = d.len() as i32;
    let mut eprec = match prec {
        Some(p) => p.max(1) as i32,
        None => nd,
    };
    if prec.is_some() && eprec > nd && nd >= dp {
        eprec = nd;
    }
    if prec.is_none() {
        eprec = 6;
    }
    let exp = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&d[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
        return out;
    }
    // %f with the digits after the point that are significant.
    if dp > 0 {
        for i in 0..dp {
            out.push(d.as_bytes().get(i as usize).map_or('0', |b| *b as char));
        }
    } else {
        out.push('0');
    }
    let frac = (nd - dp).max(0);
    if frac > 0 {
        out.push('.');
        for i in 0..frac {
            let idx = dp + i;
            out.push(if idx < 0 {
                '0'
            } else {
                d.as_bytes().get(idx as usize).map_or('0', |b| *b as char)
            });
        }
    }
    out
}

/// Go's `time.Duration.String`: `1.5s`, `970.755702ms`, `2m3.5s`, `0s`.
pub fn duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    // Below a second: the largest unit that keeps an integer part.
    let frac = |v: u128, unit: u128, suffix: &str| {
        let whole = v / unit;
        let rest = v % unit;
        let mut s = whole.to_string();
        if rest > 0 {
            let width = unit.ilog10() as usize;
            let f = format!("{rest:0width$}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s + suffix
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return frac(ns, 1_000, "µs");
    }
    if ns < 1_000_000_000 {
        return frac(ns, 1_000_000, "ms");
    }
    let secs = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s * 1_000_000_000 + sub, 1_000_000_000, "s"));
    out
}

/// Parses a Go duration (`10s`, `1m30s`, `500ms`, `1.5h`, `0`) and
/// fortio's days/weeks (`1d`, `2w`); a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs >= 0.0 && secs.is_finite() {
            return Ok(std::time::Duration::from_secs_f64(secs));
        }
    }
    let bad = || format!("invalid duration {s:?} (expected e.g. 10s, 1m30s, 500ms)");
    let mut rest = t;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        let v: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            _ => return Err(bad()),
        };
        total += v * unit;
        rest = &rest[u..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Lines of fortio's README (`fortio load`), as Go printed them.
    #[test]
    fn g_matches_go() {
        assert_eq!(g(0.060587641, Some(8)), "0.060587641");
        assert_eq!(g(0.006564, Some(4)), "0.006564");
        assert_eq!(g(0.052549016, None), "0.052549016");
        assert_eq!(g(2.42350566, Some(9)), "2.42350566");
        assert_eq!(g(4.9404876e-05, Some(8)), "4.9404876e-05");
        assert_eq!(g(1.145e-05, Some(4)), "1.145e-05");
        assert_eq!(g(2.7697e-05, None), "2.7697e-05");
        assert_eq!(g(0.000887051, None), "0.000887051");
        assert_eq!(g(0.0004573740, Some(6)), "0.000457374");
        assert_eq!(g(80495.0, Some(5)), "80495");
        assert_eq!(g(103012.5, Some(5)), "1.0301e+05");
        assert_eq!(g(7.9056, Some(5)), "7.9056");
        assert_eq!(g(8.0, None), "8");
        assert_eq!(g(-1.0, None), "-1");
        assert_eq!(g(99.9, None), "99.9");
        assert_eq!(g(1234567.0, None), "1.234567e+06");
        assert_eq!(g(12565.2, Some(8)), "12565.2");
        assert_eq!(g(0.0, Some(6)), "0");
        assert_eq!(g(-10.25, Some(6)), "-10.25");
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(
            duration(Duration::from_nanos(5_059_691_387)),
            "5.059691387s"
        );
        assert_eq!(duration(Duration::from_nanos(970_755_702)), "970.755702ms");
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_millis(123_500)), "2m3.5s");
        assert_eq!(duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("ten").is_err());
    }
}
