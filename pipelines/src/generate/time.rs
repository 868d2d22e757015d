//! Event times as text: RFC 3339 in UTC with milliseconds, written without
//! allocating (it runs once per generated event) and read back for `--start`.

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (month and day 1-based).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Years counted from March, so the leap day is the last day of the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    let expected = || format!("expected an RFC 3339 time like `2024-01-01T00:00:00Z`, found `{text}`");
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = b.get(range).ok_or_else(expected)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(expected());
        }
        Ok(part.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |i: usize, allowed: &[u8]| -> Result<(), String> {
        match b.get(i) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(expected()),
        }
    };
    let year = num(0..4)?;
    sep(4, b"-")?;
    let month = num(5..7)?;
    sep(7, b"-")?;
    let day = num(8..10)?;
    sep(10, b"Tt ")?;
    let hour = num(11..13)?;
    sep(13, b":")?;
    let minute = num(14..16)?;
    sep(16, b":")?;
    let second = num(17..19)?;
    let mut i = 19;
    let mut millis = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return Err(expected());
        }
        let digits = &b[start..end.min(start + 3)];
        millis = digits.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
        for _ in digits.len()..3 {
            millis *= 10;
        }
        i = end;
    }
    let offset_min: i64 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let m = i64::from(num(i + 1..i + 3)?) * 60 + i64::from(num(i + 4..i + 6)?);
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return Err(expected()),
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(format!("`{text}`: month {month} is not between 01 and 12")),
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return Err(format!("`{text}`: not a valid date and time of day"));
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second.min(59));
    Ok(days * DAY_MS + secs * 1000 + i64::from(millis) - offset_min * 60_000)
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
