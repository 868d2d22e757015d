//! Event times as text: RFC 3339 in UTC with milliseconds, written without
//! allocating (it runs once per generated event) and read back for
//! `--start`; the calendar is chrono's.

use chrono::{DateTime, Datelike, NaiveDate};

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i64 = 719_163;

/// The date (year, month, day) of a count of days since 1970-01-01
/// (clamped to chrono's range, far beyond any generated time).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let ce = (days + UNIX_EPOCH_FROM_CE).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    let date = NaiveDate::from_num_days_from_ce_opt(ce).unwrap_or(if ce < 0 { NaiveDate::MIN } else { NaiveDate::MAX });
    (i64::from(date.year()), date.month(), date.day())
}

fn push_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Appends `ms` (epoch milliseconds) as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Years
/// outside 0..=9999 are clamped to those bounds' digits (never reached by
/// the generators, whose times start in this century).
pub fn push_rfc3339_ms(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    let year = year.clamp(0, 9999) as u32;
    push_2(out, year / 100);
    push_2(out, year % 100);
    out.push(b'-');
    push_2(out, month);
    out.push(b'-');
    push_2(out, day);
    out.push(b'T');
    let secs = (in_day / 1000) as u32;
    push_2(out, secs / 3600);
    out.push(b':');
    push_2(out, secs / 60 % 60);
    out.push(b':');
    push_2(out, secs % 60);
    out.push(b'.');
    let milli = (in_day % 1000) as u32;
    out.push(b'0' + (milli / 100) as u8);
    push_2(out, milli % 100);
    out.push(b'Z');
}

/// `ms` (epoch milliseconds) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    push_rfc3339_ms(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

/// Reads an RFC 3339 date-time (`2024-01-01T00:00:00Z`, optional fraction,
/// `Z` or a `±HH:MM` offset) as epoch milliseconds; fractions below a
/// millisecond are truncated. The error says what was expected.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("expected an RFC 3339 time like `2024-01-01T00:00:00Z`, found `{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(1_704_067_201_123), "2024-01-01T00:00:01.123Z");
        assert_eq!(format_rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 1, 999, 1_704_067_201_123, 951_782_400_000, 4_102_444_799_999, -86_400_001] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Ok(ms), "{ms}");
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("2024-01-01T00:00:00Z"), Ok(1_704_067_200_000));
        assert_eq!(parse_rfc3339_ms("2024-01-01T01:00:00+01:00"), Ok(1_704_067_200_000));
        assert_eq!(parse_rfc3339_ms("2023-12-31T23:00:00-01:00"), Ok(1_704_067_200_000));
        assert_eq!(parse_rfc3339_ms("2024-01-01t00:00:00.5z"), Ok(1_704_067_200_500));
        assert_eq!(parse_rfc3339_ms("2024-01-01 00:00:00.123456Z"), Ok(1_704_067_200_123));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "yesterday",
            "2024-01-01T00:00:00Zjunk",
        ] {
            let err = parse_rfc3339_ms(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }
}
