//! Wire formats: date-times as `yyyy-MM-ddTHH:mm:ssZ`, dates as `yyyy-MM-dd`, both UTC.
//! Internally times are Unix milliseconds.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `yyyy-MM-ddTHH:mm:ssZ` for a Unix-millisecond time.
pub fn format_ms(ms: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// Parses a date (`2024-01-31`, start of that day UTC) or an RFC 3339 date-time into Unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let date = Date::parse(s, format_description!("[year]-[month]-[day]")).ok()?;
    let t = PrimitiveDateTime::new(date, time::Time::MIDNIGHT).assume_offset(UtcOffset::UTC);
    Some(t.unix_timestamp() * 1000)
}

/// Whether `s` is a plain date, so that an end bound covers that whole day.
pub fn is_date_only(s: &str) -> bool {
    s.len() == 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_seconds_utc() {
        assert_eq!(format_ms(1_618_392_624_000), "2021-04-14T09:30:24Z");
    }

    #[test]
    fn parses_dates_and_date_times() {
        assert_eq!(parse_time("2021-04-14T09:30:24Z"), Some(1_618_392_624_000));
        assert_eq!(parse_time("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_time("yesterday"), None);
    }
}
