//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! Sans-IO. The validator is fed the whole message buffer as it grows and
//! remembers how far it is known valid, so each byte is checked about once.
//! It fails fast: an invalid sequence is reported as soon as the bytes that
//! prove it arrive, mid-frame or mid-fragment, not at the end of the message
//! (Autobahn case 6.4). A code point cut at the end of the buffer is only
//! "incomplete" and is checked again once more bytes arrive.

/// Validation state for one message.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Validator {
    /// `buf[..valid]` is known to be valid UTF-8 ending on a char boundary.
    /// A message is at most `--max-message-size` (at most 256 MiB), so 32
    /// bits suffice, and every connection's decoder stays 8 bytes smaller.
    valid: u32,
}

/// The bytes can never become valid UTF-8, whatever follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    pub fn reset(&mut self) {
        self.valid = 0;
    }

    /// Checks the bytes of `buf` added since the last call. `buf` must be the
    /// same message buffer, only ever appended to.
    pub fn advance(&mut self, buf: &[u8]) -> Result<(), InvalidUtf8> {
        let valid = self.valid as usize;
        debug_assert!(valid <= buf.len() && buf.len() <= u32::MAX as usize);
        match simdutf8::compat::from_utf8(&buf[valid..]) {
            Ok(_) => {
                self.valid = buf.len() as u32;
                Ok(())
            }
            Err(e) if e.error_len().is_none() => {
                // Only an incomplete code point at the end: wait for more.
                self.valid += e.valid_up_to() as u32;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Checks that the finished message `buf` is complete, valid UTF-8.
    pub fn finish(&mut self, buf: &[u8]) -> Result<(), InvalidUtf8> {
        self.advance(buf)?;
        if self.valid as usize == buf.len() {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// Validates a complete message in one call.
#[inline]
pub fn validate(buf: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(buf)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_point_split_across_pieces_is_valid() {
        let text = "κόσμε 🎉".as_bytes();
        for split in 0..=text.len() {
            let mut v = Utf8Validator::default();
            v.advance(&text[..split]).unwrap();
            v.finish(text).unwrap();
        }
    }

    #[test]
    fn fails_fast_on_the_first_impossible_byte() {
        // 0xF4 0x90 is above U+10FFFF: invalid before the sequence ends.
        let mut v = Utf8Validator::default();
        assert_eq!(v.advance(b"ok \xF4\x90"), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        assert_eq!(v.advance(b"\xC0"), Err(InvalidUtf8));
        // An incomplete but possible prefix is not an error yet.
        let mut v = Utf8Validator::default();
        assert_eq!(v.advance(b"ok \xF0\x9F"), Ok(()));
        assert_eq!(v.finish(b"ok \xF0\x9F"), Err(InvalidUtf8));
    }

    #[test]
    fn whole_message_check() {
        assert!(validate("Hello-µ@ßöäüàá-UTF-8!!".as_bytes()).is_ok());
        assert!(validate(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80").is_err());
    }
}
