//! Host names as sluice accepts them from the wire (SNI, PROXY AUTHORITY, HTTP Host).
//!
//! One rule for all three: at most 253 bytes of ASCII letters, digits, `-`, `_` and dots,
//! labels of 1..=63. `_` is not a hostname character but occurs in real names; NUL, CR, LF,
//! space and non-ASCII never pass, so no name can inject a header or a log line.

/// Longest name (RFC 1035 §2.3.4, without the root dot).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// Checks `name` as a (possibly partial) DNS name: every byte allowed, no empty label before
/// a dot, no label over 63, at most 253 bytes. Returns the length of the last label (0 when
/// the name is empty or ends with a dot, which a complete name may not), or `None`.
pub fn labels(name: &[u8]) -> Option<usize> {
    if name.len() > MAX_HOST_NAME_LEN {
        return None;
    }
    let mut label_len: usize = 0;
    for &b in name {
        if b == b'.' {
            if label_len == 0 {
                return None;
            }
            label_len = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            label_len = label_len.saturating_add(1);
            if label_len > MAX_LABEL_LEN {
                return None;
            }
        } else {
            return None;
        }
    }
    Some(label_len)
}

/// True for a complete name: [`labels`] holds and the last label is not empty.
pub fn is_host_name(name: &[u8]) -> bool {
    labels(name).is_some_and(|last| last > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_host_name(b"example.test"));
        assert!(is_host_name(b"a_b-c.d"));
        for bad in [
            &b""[..],
            b".a",
            b"a..b",
            b"a.",
            b"a b",
            b"a\r\nb",
            b"a\0",
            b"\xc3\xa9.test",
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
        assert!(is_host_name(&[b'a'; 63]));
        assert!(!is_host_name(&[b'a'; 64]));
        let long: Vec<u8> = [
            b"a".repeat(63),
            b"b".repeat(63),
            b"c".repeat(63),
            b"d".repeat(61),
        ]
        .join(&b'.');
        assert_eq!(long.len(), 253);
        assert!(is_host_name(&long));
        assert!(!is_host_name(&[&long[..], b"e"].concat()));
        assert_eq!(labels(b"exam"), Some(4), "a viable prefix");
        assert_eq!(labels(b"example."), Some(0));
    }
}
