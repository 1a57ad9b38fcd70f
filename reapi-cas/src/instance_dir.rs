//! Maps an instance name to one safe, reversible path component, so that
//! per-instance data can live in its own directory and be found again from
//! the directory tree alone.
//!
//! Letters, digits, `_`, `-` and non-leading `.` stay as they are (operators
//! can read the directory names); every other byte becomes `%XX`. The empty
//! name is `@default`, which no escaped name can equal because `@` is always
//! escaped.

use reapi_core::{Error, Result};

const DEFAULT: &str = "@default";

/// Longest directory name most filesystems accept.
const MAX_COMPONENT: usize = 255;

/// The directory name of an instance; INVALID_ARGUMENT when the name is too
/// long to be one path component once escaped.
pub fn encode_checked(instance: &str) -> Result<String> {
    let encoded = encode(instance);
    if encoded.len() > MAX_COMPONENT {
        return Err(Error::invalid_argument(format!(
            "instance name {:?}... is too long ({} bytes, {} once escaped; at most {MAX_COMPONENT})",
            instance.chars().take(40).collect::<String>(),
            instance.len(),
            encoded.len()
        )));
    }
    Ok(encoded)
}

/// The directory name of an instance, however long.
pub fn encode(instance: &str) -> String {
    if instance.is_empty() {
        return DEFAULT.to_string();
    }
    let mut out = String::with_capacity(instance.len());
    for (i, b) in instance.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The instance name a directory holds, or `None` if the component is not
/// one `encode` produces.
pub fn decode(component: &str) -> Option<String> {
    if component == DEFAULT {
        return Some(String::new());
    }
    if component.is_empty() || component.starts_with('.') {
        return None;
    }
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = component.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode(&name) == component).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for name in [
            "", "main", "a/b/c", ".hidden", "..", "@default", "ü/x y", "%41", "_",
        ] {
            let enc = encode_checked(name).unwrap();
            assert!(!enc.contains('/') && enc != "." && enc != "..", "{enc}");
            assert_eq!(decode(&enc).as_deref(), Some(name), "{name}");
        }
    }

    #[test]
    fn distinct_names_distinct_dirs() {
        assert_ne!(encode(""), encode("@default"));
        assert_ne!(encode("a/b"), encode("a%2Fb"));
    }

    #[test]
    fn overlong_names_are_invalid_arguments() {
        assert!(encode_checked(&"a".repeat(255)).is_ok());
        let err = encode_checked(&"/".repeat(100)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn rejects_foreign_components() {
        for c in ["", ".", "..", "a b", "%4", "%zz", "%41"] {
            assert_eq!(decode(c), None, "{c}");
        }
    }
}
