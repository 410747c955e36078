//! ISO-8601 timestamps to the UTC calendar date that names a store directory.

use crate::error::{DesError, Result};

fn bad(input: &str, why: &str) -> DesError {
  DesError::BadArg(format!(
    "created_at {input:?} is not an ISO-8601 timestamp: {why}"
  ))
}

fn digits(s: &[u8], at: usize, n: usize, input: &str, what: &str) -> Result<i64> {
  let part = s
    .get(at..at + n)
    .filter(|p| p.iter().all(u8::is_ascii_digit))
    .ok_or_else(|| {
      bad(
        input,
        &format!("expected {n} digits for the {what} at position {at}"),
      )
    })?;
  Ok(
    part
      .iter()
      .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
  )
}

fn days_in_month(year: i64, month: i64) -> i64 {
  match month {
    2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
    2 => 28,
    4 | 6 | 9 | 11 => 30,
    _ => 31,
  }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
  let y = if m <= 2 { y - 1 } else { y };
  let era = y.div_euclid(400);
  let yoe = y - era * 400;
  let mp = (m + 9) % 12;
  let doy = (153 * mp + 2) / 5 + d - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
  let z = z + 719468;
  let era = z.div_euclid(146097);
  let doe = z - era * 146097;
  let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  let mp = (5 * doy + 2) / 153;
  let d = doy - (153 * mp + 2) / 5 + 1;
  let m = if mp < 10 { mp + 3 } else { mp - 9 };
  (
    if m <= 2 {
      yoe + era * 400 + 1
    } else {
      yoe + era * 400
    },
    m,
    d,
  )
}

/// White space as Python's `str.strip()` takes it off (`str.isspace`), as
/// the reference strips every created_at: Rust's own `trim` keeps
/// U+001C..U+001F.
fn is_python_space(c: char) -> bool {
  c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Parses `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]][Z|±HH[:MM]]` and returns
/// the instant as seconds since the Unix epoch. No offset means UTC.
pub fn parse_iso8601(input: &str) -> Result<i64> {
  let s = input.trim_matches(is_python_space).as_bytes();
  let year = digits(s, 0, 4, input, "year")?;
  if year == 0 {
    return Err(bad(input, "year 0000 is not a year (the first is 0001)"));
  }
  if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
    return Err(bad(input, "expected YYYY-MM-DD"));
  }
  let month = digits(s, 5, 2, input, "month")?;
  let day = digits(s, 8, 2, input, "day")?;
  if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
    return Err(bad(input, "no such calendar date"));
  }
  let mut at = 10;
  let (mut hour, mut minute, mut second) = (0, 0, 0);
  if matches!(s.get(at), Some(b'T' | b't' | b' ')) {
    hour = digits(s, at + 1, 2, input, "hour")?;
    if s.get(at + 3) != Some(&b':') {
      return Err(bad(input, "expected HH:MM"));
    }
    minute = digits(s, at + 4, 2, input, "minute")?;
    at += 6;
    if s.get(at) == Some(&b':') {
      second = digits(s, at + 1, 2, input, "second")?;
      at += 3;
      if matches!(s.get(at), Some(b'.' | b',')) {
        at += 1;
        let start = at;
        while s.get(at).is_some_and(u8::is_ascii_digit) {
          at += 1;
        }
        if at == start {
          return Err(bad(input, "empty fraction of a second"));
        }
      }
    }
    if hour > 23 || minute > 59 || second > 59 {
      return Err(bad(input, "time of day out of range"));
    }
  }
  let offset_seconds = match s.get(at) {
    None => 0,
    Some(b'Z' | b'z') if at + 1 == s.len() => 0,
    Some(sign @ (b'+' | b'-')) => {
      let oh = digits(s, at + 1, 2, input, "offset hours")?;
      let rest = &s[at + 3..];
      let om = match rest {
        [] => 0,
        [b':', ..] if rest.len() == 3 => digits(s, at + 4, 2, input, "offset minutes")?,
        _ if rest.len() == 2 => digits(s, at + 3, 2, input, "offset minutes")?,
        _ => return Err(bad(input, "malformed offset")),
      };
      if oh > 23 || om > 59 {
        return Err(bad(input, "offset out of range"));
      }
      let total = oh * 3600 + om * 60;
      if *sign == b'+' {
        total
      } else {
        -total
      }
    }
    Some(_) => return Err(bad(input, &format!("unexpected text at position {at}"))),
  };
  let days = days_from_civil(year, month, day);
  Ok(days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds)
}

/// `YYYYMMDD` of the instant in UTC (the same for every offset the instant is written in).
pub fn utc_date_dir(created_at: &str) -> Result<String> {
  let epoch = parse_iso8601(created_at)?;
  let (y, m, d) = civil_from_days(epoch.div_euclid(86400));
  if !(0..=9999).contains(&y) {
    return Err(bad(created_at, "year out of range in UTC"));
  }
  Ok(format!("{y:04}{m:02}{d:02}"))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn strips_the_white_space_python_strips_and_no_other() {
    let clean = parse_iso8601("2024-03-01T12:00:00Z").unwrap();
    for padded in [
      "\u{85}2024-03-01T12:00:00Z",
      "2024-03-01T12:00:00Z\u{1c}",
      "\u{1f} 2024-03-01T12:00:00Z\u{3000}",
      "\t2024-03-01T12:00:00Z\u{a0}",
    ] {
      assert_eq!(parse_iso8601(padded).unwrap(), clean, "{padded:?}");
    }
    // Not white space to Python: U+FEFF, U+200B.
    assert!(parse_iso8601("\u{feff}2024-03-01T12:00:00Z").is_err());
    assert!(parse_iso8601("2024-03-01T12:00:00Z\u{200b}").is_err());
  }

  #[test]
  fn year_0000_is_refused_as_python_refuses_it() {
    let err = parse_iso8601("0000-01-01T00:00:00Z").unwrap_err();
    assert!(err.to_string().contains("year 0000"), "{err}");
    assert!(parse_iso8601("0001-01-01T00:00:00Z").is_ok());
  }
}
