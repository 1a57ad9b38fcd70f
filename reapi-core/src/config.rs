//! Configuration value types shared by the binaries and library users.

use crate::error::{Error, Result};

/// Parses a byte size: plain bytes (`1048576`) or a number with a binary
/// unit (`512K`, `64MiB`, `10G`, `1TB`; units are powers of 1024).
pub fn parse_byte_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(Error::invalid_argument(format!(
                "size {text:?} has an unknown unit {other:?} (use K, M, G or T)"
            )))
        }
    };
    // Whole numbers stay exact; only fractions ("1.5G") go through f64.
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| Error::invalid_argument(format!("size {text:?} is out of range")));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| Error::invalid_argument(format!("size {text:?} is not a number")))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(Error::invalid_argument(format!(
            "size {text:?} is out of range"
        )));
    }
    Ok(bytes as u64)
}

/// Parses a duration: whole seconds (`30`) or a number with a unit
/// (`500ms`, `10s`, `5m`, `3h`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(Error::invalid_argument(format!(
                "duration {text:?} has an unknown unit {other:?} (use ms, s, m or h)"
            )))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| Error::invalid_argument(format!("duration {text:?} is not a number")))?;
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(Error::invalid_argument(format!(
            "duration {text:?} is out of range"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3h").unwrap(), Duration::from_secs(3 * 3600));
        for bad in ["", "s", "10 days", "-1s", "1e99h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse_byte_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_byte_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_byte_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_byte_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_byte_size(" 2 TB ").unwrap(), 2 << 40);
        assert_eq!(
            parse_byte_size("9007199254740993").unwrap(),
            9007199254740993
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "G", "10X", "-5", "1..2M", "ten", "20000000T"] {
            assert!(parse_byte_size(bad).is_err(), "{bad}");
        }
    }
}
