//! The bytes a session sends first: a captured frame (PROXY header + ClientHello), or with
//! `--strip-proxy` the ClientHello alone, which is what an upstream behind a proxy receives
//! and so what a direct run must send.

use crate::args::Args;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// PROXY v1 headers are at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;

pub fn load(args: &Args) -> Result<Vec<u8>, String> {
    let path: String = args.req("frame")?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
    if !args.flag("strip-proxy") {
        return Ok(bytes);
    }
    let skip = proxy_header_len(&bytes).ok_or_else(|| format!("{path}: no PROXY header"))?;
    Ok(bytes[skip..].to_vec())
}

/// Length of the PROXY v1 or v2 header at the start of `bytes`, if there is a whole one.
fn proxy_header_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() >= 16 && bytes[..12] == V2_SIGNATURE[..] {
        let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        return (len <= bytes.len()).then_some(len);
    }
    if bytes.starts_with(b"PROXY ") {
        let window = &bytes[..bytes.len().min(V1_MAX)];
        return window.windows(2).position(|w| w == b"\r\n").map(|i| i + 2);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::proxy_header_len;

    #[test]
    fn finds_both_versions() {
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        v2.extend_from_slice(&[0; 12]); // 4+4 addresses, 2+2 ports
        v2.push(0x16);
        assert_eq!(proxy_header_len(&v2), Some(28));
        assert_eq!(proxy_header_len(b"PROXY UNKNOWN\r\n\x16"), Some(15));
        assert_eq!(proxy_header_len(b"\x16\x03\x01"), None);
    }
}
