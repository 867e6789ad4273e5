//! Reads CloudTrail's `eventTime` into a UTC [`Minute`]. Nearly every record uses the fixed form
//! `YYYY-MM-DDTHH:MM:SSZ`, so that form is parsed by position with integer arithmetic; anything
//! else (other offsets, lowercase separators) falls back to chrono's RFC 3339 parser.

use crate::series::Minute;

/// Parses an `eventTime` (`2023-07-10T12:08:31Z`, also with fractional seconds and a `+00:00`
/// offset, or any RFC 3339 time) and truncates it to its UTC minute. `None` for anything that is not
/// a valid time (month 13, February 30, garbage); never panics.
pub fn parse_event_time(s: &str) -> Option<Minute> {
    match parse_fixed(s.as_bytes()) {
        Some(minute) => Some(minute),
        None => parse_rfc3339(s),
    }
}

fn parse_rfc3339(s: &str) -> Option<Minute> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp().div_euclid(60))
}

/// The common UTC forms only; returns `None` (and lets chrono decide) for anything else.
fn parse_fixed(b: &[u8]) -> Option<Minute> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !utc_suffix(&b[19..]) {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    // Second 60 is a leap second: it still belongs to the minute it ends.
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 1440 + hour * 60 + minute)
}

/// `Z`, `+00:00` or `-00:00`, optionally after a fraction of a second.
fn utc_suffix(rest: &[u8]) -> bool {
    let rest = match rest.split_first() {
        Some((b'.', fraction)) => {
            let digits_len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits_len == 0 {
                return false;
            }
            &fraction[digits_len..]
        }
        _ => rest,
    };
    matches!(rest, b"Z" | b"+00:00" | b"-00:00")
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn chrono_minute(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Minute {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .timestamp()
            .div_euclid(60)
    }

    #[test]
    fn common_form_truncates_to_the_minute() {
        assert_eq!(
            parse_event_time("2023-07-10T12:08:59Z"),
            Some(chrono_minute(2023, 7, 10, 12, 8, 0))
        );
        assert_eq!(parse_event_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_event_time("1969-12-31T23:59:59Z"), Some(-1));
    }

    #[test]
    fn fractions_and_zero_offsets_are_accepted() {
        let m = chrono_minute(2024, 7, 31, 14, 23, 0);
        for s in [
            "2024-07-31T14:23:46.123Z",
            "2024-07-31T14:23:46.123456789Z",
            "2024-07-31T14:23:46+00:00",
            "2024-07-31T14:23:46.5+00:00",
            "2024-07-31T14:23:46-00:00",
        ] {
            assert_eq!(parse_event_time(s), Some(m), "{s}");
        }
    }

    #[test]
    fn other_offsets_go_through_chrono() {
        // 16:23+02:00 is 14:23 UTC.
        assert_eq!(
            parse_event_time("2024-07-31T16:23:46+02:00"),
            Some(chrono_minute(2024, 7, 31, 14, 23, 0))
        );
        assert_eq!(
            parse_event_time("2024-07-31t14:23:46z"),
            Some(chrono_minute(2024, 7, 31, 14, 23, 0))
        );
    }

    #[test]
    fn calendar_edges_match_chrono() {
        for (y, mo, d) in [
            (2000, 2, 29),
            (2024, 2, 29),
            (2023, 12, 31),
            (2100, 3, 1),
            (9999, 12, 31),
            (1, 1, 1),
        ] {
            let s = format!("{y:04}-{mo:02}-{d:02}T23:59:59Z");
            assert_eq!(
                parse_event_time(&s),
                Some(chrono_minute(y, mo, d, 23, 59, 0)),
                "{s}"
            );
        }
    }

    #[test]
    fn invalid_times_are_rejected() {
        for s in [
            "",
            "garbage",
            "2023-13-01T00:00:00Z",
            "2023-00-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2023-04-31T00:00:00Z",
            "2023-07-10T24:00:00Z",
            "2023-07-10T12:60:00Z",
            "2023-07-10T12:08:61Z",
            "2023-07-10T12:08:00",
            "2023-07-10T12:08:00.Z",
            "2023-07-10T12:08:00Zjunk",
            "2023-07-1xT12:08:00Z",
            "+2023-07-10T12:08:00Z",
            "2023-07-10T12:08:00+25:00",
            "２０２３-07-10T12:08:00Z",
        ] {
            assert_eq!(parse_event_time(s), None, "{s:?}");
        }
    }
}
