//! Byte scans over mostly-ASCII text that extraction and tokenizing share.

/// The ASCII characters `char::is_whitespace` accepts (tab, LF, VT, FF, CR, space): the ones
/// UAX #29 never joins to an ASCII letter, digit or punctuation mark.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// The first index at or after `i` whose eight-byte word (or what is left of `bytes`, if
/// fewer than eight) holds a byte that is not printable ASCII (0x21 to 0x7F): whitespace, a
/// control character or a byte of a multi-byte character. Every byte before it is printable
/// ASCII; it may be too (the caller looks at bytes one at a time from there). Byte loops over
/// text were the hottest functions of extraction and tokenizing after the HTML tokenizer, and
/// in wasm each iteration also checks the interruption epoch.
pub(crate) fn skip_printable(bytes: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // The top bit of each byte that is 0x80 or more (`w`) or below 0x21 (the subtraction
        // borrows). A borrow can flag bytes above a flagged one, never below, so the lowest
        // flag is exact.
        let flagged = (w.wrapping_sub(0x2121_2121_2121_2121) | w) & 0x8080_8080_8080_8080;
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_printable_stops_at_the_first_byte_that_is_not_printable_ascii() {
        // Every byte value at every position of a 20-byte run of printable ASCII.
        for b in 0..=255u8 {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = b;
                let end = skip_printable(&bytes, 0);
                if (0x21..=0x7f).contains(&b) {
                    // All printable: only the tail shorter than a word is left.
                    assert_eq!(end, 16, "byte {b:#x} at {at}");
                } else {
                    assert!(end <= at, "byte {b:#x} at {at}: skipped to {end}");
                    assert!(at - end < 8, "byte {b:#x} at {at}: stopped at {end}");
                }
                assert!(bytes[..end].iter().all(|c| (0x21..=0x7f).contains(c)));
            }
        }
        assert_eq!(skip_printable(b"", 0), 0);
        assert_eq!(skip_printable(b"abc", 3), 3);
        assert_eq!(skip_printable(b"abcdefgh\x00", 0), 8);
    }
}
