//! Wire faults of the WebSocket layer, one variant each, and the single
//! place that maps each to the close code and plain-words reason the relay
//! sends (SPEC section 3).

use crate::wire::close::CloseCode;
use crate::wire::deflate::InflateError;
use std::fmt;

/// Everything a client can get wrong after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV2 or RSV3 set, or RSV1 without permessage-deflate negotiated.
    ReservedBits,
    /// RSV1 (compressed) on a control frame or a continuation frame, which
    /// RFC 7692 section 6 forbids.
    CompressedBitMisplaced,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// A client frame without a mask (section 5.1).
    Unmasked,
    /// A control frame with FIN clear (section 5.5).
    FragmentedControl,
    /// A control frame payload over 125 bytes (section 5.5).
    ControlTooLong,
    /// A 64-bit length with its most significant bit set.
    LengthOverflow,
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A close frame with a one-byte payload (section 5.5.1).
    CloseLength,
    /// A close status code that may not be sent on the wire (section 7.4).
    CloseCodeInvalid(u16),
    /// A close reason that is not UTF-8.
    CloseReasonUtf8,
    /// A text message that is not UTF-8 (section 8.1).
    InvalidUtf8,
    /// A frame over `--max-frame-size`.
    FrameTooBig,
    /// A message over `--max-message-size`.
    MessageTooBig,
    /// A compressed message that inflates past `--max-message-size`
    /// (SPEC section 10: stopped before the excess is allocated).
    InflatedTooBig,
    /// A compressed message that is not valid DEFLATE data.
    CorruptCompression,
}

impl From<InflateError> for ProtocolError {
    fn from(e: InflateError) -> ProtocolError {
        match e {
            InflateError::TooBig => ProtocolError::InflatedTooBig,
            InflateError::Corrupt => ProtocolError::CorruptCompression,
        }
    }
}

impl ProtocolError {
    /// The close code the relay answers this fault with.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::CorruptCompression => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooBig
            | ProtocolError::MessageTooBig
            | ProtocolError::InflatedTooBig => CloseCode::MESSAGE_TOO_BIG,
            ProtocolError::ReservedBits
            | ProtocolError::CompressedBitMisplaced
            | ProtocolError::UnknownOpcode(_)
            | ProtocolError::Unmasked
            | ProtocolError::FragmentedControl
            | ProtocolError::ControlTooLong
            | ProtocolError::LengthOverflow
            | ProtocolError::UnexpectedContinuation
            | ProtocolError::ExpectedContinuation
            | ProtocolError::CloseLength
            | ProtocolError::CloseCodeInvalid(_)
            | ProtocolError::CloseReasonUtf8 => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The reason text sent in the close frame (fits in 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set that no negotiated extension defines",
            ProtocolError::CompressedBitMisplaced => {
                "compressed bit (RSV1) set on a control or continuation frame"
            }
            ProtocolError::UnknownOpcode(_) => "unknown opcode",
            ProtocolError::Unmasked => "client frames must be masked",
            ProtocolError::FragmentedControl => "control frames must not be fragmented",
            ProtocolError::ControlTooLong => "control frame payload over 125 bytes",
            ProtocolError::LengthOverflow => "frame length has its most significant bit set",
            ProtocolError::UnexpectedContinuation => {
                "continuation frame without a message to continue"
            }
            ProtocolError::ExpectedContinuation => {
                "new message started before the fragmented one ended"
            }
            ProtocolError::CloseLength => "close frame payload of one byte",
            ProtocolError::CloseCodeInvalid(_) => "close status code not allowed on the wire",
            ProtocolError::CloseReasonUtf8 => "close reason is not valid UTF-8",
            ProtocolError::InvalidUtf8 => "text message is not valid UTF-8",
            ProtocolError::FrameTooBig => "frame exceeds the relay's max frame size",
            ProtocolError::MessageTooBig => "message exceeds the relay's max message size",
            ProtocolError::InflatedTooBig => {
                "compressed message inflates past the relay's max message size"
            }
            ProtocolError::CorruptCompression => "compressed message is not valid deflate data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownOpcode(op) => write!(f, "unknown opcode 0x{op:X}"),
            ProtocolError::CloseCodeInvalid(code) => {
                write!(f, "close status code {code} not allowed on the wire")
            }
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC section 3's table, one row per fault class.
    #[test]
    fn close_code_table() {
        let rows = [
            (ProtocolError::Unmasked, 1002),
            (ProtocolError::ReservedBits, 1002),
            (ProtocolError::UnknownOpcode(3), 1002),
            (ProtocolError::FragmentedControl, 1002),
            (ProtocolError::ControlTooLong, 1002),
            (ProtocolError::UnexpectedContinuation, 1002),
            (ProtocolError::ExpectedContinuation, 1002),
            (ProtocolError::CloseCodeInvalid(1005), 1002),
            (ProtocolError::CloseLength, 1002),
            (ProtocolError::CloseReasonUtf8, 1002),
            (ProtocolError::InvalidUtf8, 1007),
            (ProtocolError::MessageTooBig, 1009),
            (ProtocolError::FrameTooBig, 1009),
            // permessage-deflate (SPEC section 10, RFC 7692).
            (ProtocolError::CompressedBitMisplaced, 1002),
            (ProtocolError::InflatedTooBig, 1009),
            (ProtocolError::CorruptCompression, 1007),
        ];
        for (err, code) in rows {
            assert_eq!(err.close_code().0, code, "{err}");
            assert!(err.reason().len() <= 123);
        }
    }
}
