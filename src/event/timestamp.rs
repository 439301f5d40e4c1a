//! Event-time parsing and formatting (SPEC §2).
//!
//! Accepted forms: RFC 3339 / ISO-8601 with `Z` or an offset, with or
//! without fractional seconds (1–9 digits, kept to microseconds), ISO-8601
//! without an offset (taken as UTC), and integers as epoch milliseconds.
//!
//! The common shapes are parsed by hand: this runs once per event on the hot
//! path and chrono's general parser costs several times more. The property
//! test at the bottom checks the fast path against chrono on random inputs.

use super::Micros;
use chrono::{DateTime, SecondsFormat, Utc};

/// Latest accepted event time: 9999-12-31T23:59:59.999999Z.
pub const MAX_MICROS: Micros = 253_402_300_799_999_999;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampError(pub String);

/// Parses the string form of a timestamp into UTC microseconds.
pub fn parse_str(s: &str) -> Result<Micros, TimestampError> {
    let t = parse_iso(s.as_bytes()).ok_or_else(|| TimestampError(format!("unparseable timestamp {s:?}")))?;
    check_range(t)
}

/// Parses an integer timestamp: epoch milliseconds.
pub fn from_epoch_millis(ms: i64) -> Result<Micros, TimestampError> {
    let t = ms.checked_mul(1000).ok_or_else(|| TimestampError(format!("epoch millis {ms} out of range")))?;
    check_range(t)
}

fn check_range(t: Micros) -> Result<Micros, TimestampError> {
    // Event time becomes a timely timestamp (u64) and a Parquet timestamp:
    // times before the epoch or after year 9999 are refused, not wrapped.
    if !(0..=MAX_MICROS).contains(&t) {
        return Err(TimestampError(format!(
            "timestamp {} outside 1970-01-01..9999-12-31",
            format_rfc3339(t.clamp(i64::MIN / 2, i64::MAX / 2))
        )));
    }
    Ok(t)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let mut v = 0i64;
    for i in 0..n {
        let c = *b.get(at + i)?;
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM|±HHMM|±HH]`, or `None`.
fn parse_iso(b: &[u8]) -> Option<Micros> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
    let (h, mi, s) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    // A leap second (:60) is accepted as RFC 3339 allows and lands on the
    // next second, which is what the arithmetic below does naturally.
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 || n > 9 {
            return None;
        }
        for _ in n..6 {
            micros *= 10;
        }
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (oh, om) = match rest.len() {
                2 => (digits(rest, 0, 2)?, 0),
                4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
                5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        Some(_) => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-24T10:00:00.123456Z`.
pub fn format_rfc3339(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => format!("{t}us"),
    }
}

/// RFC 3339 UTC to the second, for window bounds (always whole minutes).
pub fn format_rfc3339_secs(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => format!("{t}us"),
    }
}

/// The wall clock in microseconds.
pub fn now_micros() -> Micros {
    Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Micros {
        parse_str(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    #[test]
    fn all_spec_forms() {
        let base = 1_764_064_800_000_000; // 2025-11-25T10:00:00Z
        assert_eq!(p("2025-11-25T10:00:00Z"), base);
        assert_eq!(p("2025-11-25T10:00:00z"), base);
        assert_eq!(p("2025-11-25T10:00:00"), base);
        assert_eq!(p("2025-11-25 10:00:00"), base);
        assert_eq!(p("2025-11-25T11:30:00+01:30"), base);
        assert_eq!(p("2025-11-25T11:30:00+0130"), base);
        assert_eq!(p("2025-11-25T09:00:00-01"), base);
        assert_eq!(p("2025-11-25T10:00:00.123456+00:00"), base + 123_456);
        assert_eq!(p("2025-11-25T10:00:00.5Z"), base + 500_000);
        assert_eq!(p("2025-11-25T10:00:00.123456789Z"), base + 123_456);
        assert_eq!(from_epoch_millis(1_764_064_800_123), Ok(base + 123_000));
    }

    #[test]
    fn refuses_garbage() {
        for s in [
            "",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-11-25T24:00:00Z",
            "2025-11-25T10:00:00.Z",
            "2025-11-25T10:00:00.1234567890Z",
            "2025-11-25T10:00:00+25:00",
            "2025-11-25T10:00:00Zjunk",
            "2025-11-25",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(parse_str(s).is_err(), "{s} should be refused");
        }
        assert!(from_epoch_millis(-1).is_err());
        assert!(from_epoch_millis(i64::MAX).is_err());
    }

    #[test]
    fn leap_day_and_leap_second() {
        assert_eq!(p("2024-02-29T00:00:00Z"), p("2024-02-28T00:00:00Z") + 86_400_000_000);
        assert_eq!(p("2016-12-31T23:59:60Z"), p("2017-01-01T00:00:00Z"));
    }

    #[test]
    fn formats() {
        assert_eq!(format_rfc3339(1_764_064_800_123_456), "2025-11-25T10:00:00.123456Z");
        assert_eq!(format_rfc3339_secs(1_764_064_800_000_000), "2025-11-25T10:00:00Z");
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_chrono(
            secs in 0i64..253_402_300_799,
            frac_digits in 0usize..=9,
            frac in 0u64..1_000_000_000,
            off_min in -1439i32..=1439,
            style in 0u8..3,
        ) {
            let off = chrono::FixedOffset::east_opt(off_min * 60).unwrap();
            let dt = DateTime::<Utc>::from_timestamp(secs, 0).unwrap().with_timezone(&off);
            let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
            if frac_digits > 0 {
                let f = format!("{:09}", frac);
                s.push('.');
                s.push_str(&f[..frac_digits]);
            }
            match style {
                0 => s.push_str(&dt.format("%:z").to_string()),
                1 => s.push_str(&dt.format("%z").to_string()),
                _ => {}
            }
            let expected = if style == 2 {
                chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").unwrap().and_utc().timestamp_micros()
            } else {
                DateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f%z").unwrap().timestamp_micros()
            };
            match parse_str(&s) {
                Ok(got) => prop_assert_eq!(got, expected, "{}", s),
                // Only out-of-range instants (offsets pushing past the bounds) may be refused.
                Err(_) => prop_assert!(!(0..=MAX_MICROS).contains(&expected), "{}", s),
            }
        }
    }
}
