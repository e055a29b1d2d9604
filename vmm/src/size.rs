//! Parsing of user-given sizes such as `512M` or `2G`.
//!
//! Suffixes are binary (K = KiB, M = MiB, G = GiB, T = TiB), case
//! insensitive, optionally followed by `iB` or `B`. A plain number means
//! MiB, as in QEMU's `-m`.

/// Errors parsing a size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    /// Nothing was given.
    #[error("empty size: give a number with an optional K, M, G or T suffix, e.g. 512M or 2G")]
    Empty,
    /// The number part is not a decimal number.
    #[error(
        "invalid size {0:?}: expected a number with an optional K, M, G or T suffix, e.g. 512M or 2G"
    )]
    Invalid(String),
    /// The suffix is not one of K, M, G, T.
    #[error("invalid size suffix in {0:?}: use K, M, G or T (binary units), e.g. 512M or 2G")]
    BadSuffix(String),
    /// The value does not fit in 64 bits.
    #[error("size {0:?} is too large")]
    Overflow(String),
}

/// Parses `text` into a number of bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(SizeError::Invalid(text.to_string()));
    }
    let value: u64 = num
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    let lower = suffix.to_ascii_lowercase();
    let unit = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let shift = match unit {
        _ if lower == "b" => 0,
        "" => 20,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(SizeError::BadSuffix(text.to_string())),
    };
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_suffixes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("256"), Ok(256 << 20));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size(" 128M "), Ok(128 << 20));
    }

    #[test]
    fn reject_malformed_sizes() {
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert_eq!(parse_size("M"), Err(SizeError::Invalid("M".into())));
        assert_eq!(parse_size("-1G"), Err(SizeError::Invalid("-1G".into())));
        assert_eq!(parse_size("12X"), Err(SizeError::BadSuffix("12X".into())));
        assert_eq!(parse_size("1.5G"), Err(SizeError::BadSuffix("1.5G".into())));
        assert_eq!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow("99999999999999999999".into()))
        );
        assert_eq!(
            parse_size("17179869184G"),
            Err(SizeError::Overflow("17179869184G".into()))
        );
    }

    #[test]
    fn error_messages_say_what_to_type() {
        assert_eq!(
            parse_size("12X").unwrap_err().to_string(),
            "invalid size suffix in \"12X\": use K, M, G or T (binary units), e.g. 512M or 2G"
        );
        assert!(
            parse_size("")
                .unwrap_err()
                .to_string()
                .contains("e.g. 512M or 2G")
        );
    }
}
