//! CRC-32C (Castagnoli), as the PROXY protocol v2 `PP2_TYPE_CRC32C` TLV uses it.
//!
//! For: checksumming a v2 header on receipt and on emission, in pieces so that the
//! header never has to be copied to zero its checksum field. Must never allocate, panic
//! or depend on CPU features; the table is built at compile time by a `const fn`.
/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// One entry per byte value: the CRC of that byte alone (without pre/post inversion).
const TABLE: [u32; 256] = build_table();

// Evaluated only at compile time: an out-of-range index would be a build error, not a panic.
#[allow(clippy::indexing_slicing)]
const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// The CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    update(0, data)
}

/// Continues a checksum: `update(crc32c(a), b) == crc32c(a ++ b)`, and `update(0, d) == crc32c(d)`.
///
/// `crc` is a finished value (as returned by [`crc32c`] or `update`), so pieces chain
/// without any separate init/finish step.
pub fn update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        // `c as u8 ^ b` is below 256, so `get` never misses; it only keeps the lint honest.
        let entry = TABLE.get(usize::from(c as u8 ^ b)).copied().unwrap_or(0);
        c = (c >> 8) ^ entry;
    }
    !c
}

/// Continues a checksum over `n` zero bytes, as if they were passed to [`update`].
pub fn update_zeros(crc: u32, n: usize) -> u32 {
    let mut c = crc;
    let zeros = [0u8; 8];
    let mut left = n;
    while left > 0 {
        let step = left.min(zeros.len());
        c = update(c, zeros.get(..step).unwrap_or(&[]));
        left -= step;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // The standard check value for CRC-32C.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn rfc3720_vectors() {
        // RFC 3720 (iSCSI) appendix B.4.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec), 0x113F_DB5C);
    }

    #[test]
    fn streaming_equals_one_shot_at_every_split() {
        let data = b"PROXY protocol v2 header with a CRC32C TLV";
        let whole = crc32c(data);
        for i in 0..=data.len() {
            let (a, b) = data.split_at(i);
            assert_eq!(update(crc32c(a), b), whole, "split at {i}");
        }
    }

    #[test]
    fn zeros_match_explicit_zeros() {
        for n in [0usize, 1, 4, 7, 8, 9, 100] {
            let explicit = update(crc32c(b"abc"), &vec![0u8; n]);
            assert_eq!(update_zeros(crc32c(b"abc"), n), explicit, "n={n}");
        }
    }
}
