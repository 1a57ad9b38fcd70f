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

#[cfg(test)]
mod tests {
    use super::*;

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
