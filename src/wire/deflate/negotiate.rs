//! RFC 7692 section 7.1: which `permessage-deflate` offer the relay takes.
//!
//! Sans-IO and allocation-free. Input: every `Sec-WebSocket-Extensions`
//! value of the request, in order (a request may carry several headers, each
//! a comma-separated list of offers, RFC 6455 section 9.1). Output: the
//! parameters of the first offer the relay can honour, or `None`, which
//! declines: the upgrade goes ahead without the extension.
//!
//! Policy (SPEC section 10):
//! - the answer always carries `server_no_context_takeover;
//!   client_no_context_takeover`, so neither side keeps an LZ77 window
//!   between messages and no connection holds compression state;
//! - `server_max_window_bits=N` (8 to 15) is honoured and echoed (section
//!   7.1.2.1: a server accepts it by answering with the same or a smaller
//!   value); `client_max_window_bits` is accepted with or without a value and
//!   not answered (7.1.2.2 makes that optional; the relay inflates with a
//!   32 KiB window, enough for every client window);
//! - an offer with an unknown or duplicated parameter, or an invalid value,
//!   is declined (7.1) and the next offer is tried;
//! - a header value that is not a well-formed extension list contributes no
//!   offer at all: where its offers begin and end cannot be trusted.
//!
//! Names are compared case-insensitively; quoted values are unescaped and,
//! as RFC 6455 section 9.1 requires, must then be tokens.

use super::WindowBits;

/// What the relay agreed to on one connection: no context takeover either
/// way, and the largest LZ77 window its compressed frames may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The client's `server_max_window_bits`, when it sent one.
    pub server_max_window_bits: Option<WindowBits>,
}

impl DeflateParams {
    /// The window the relay compresses with for this connection.
    pub fn server_window(&self) -> WindowBits {
        self.server_max_window_bits.unwrap_or(WindowBits::MAX)
    }

    /// The exact `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response(&self) -> &'static str {
        match self.server_max_window_bits {
            None => RESPONSE,
            Some(bits) => RESPONSE_WITH_WINDOW[usize::from(bits.get() - WindowBits::MIN.get())],
        }
    }
}

/// Picks the first `permessage-deflate` offer the relay can honour from the
/// request's `Sec-WebSocket-Extensions` values, in header order.
pub fn negotiate<'h, I>(header_values: I) -> Option<DeflateParams>
where
    I: IntoIterator<Item = &'h [u8]>,
{
    header_values
        .into_iter()
        .find_map(|value| first_acceptable(value).ok().flatten())
}

/// The header value was not a well-formed extension list.
#[derive(Debug)]
struct Malformed;

/// The first acceptable offer of one header value, once the whole value has
/// been found well-formed.
fn first_acceptable(value: &[u8]) -> Result<Option<DeflateParams>, Malformed> {
    let mut cur = Cursor { s: value, pos: 0 };
    let mut chosen = None;
    loop {
        cur.skip_ows();
        match cur.peek() {
            None => return Ok(chosen),
            // Empty list elements are allowed and ignored (RFC 7230 section 7).
            Some(b',') => {
                cur.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cur.token()?;
        let mut offer = Offer::new(name.eq_ignore_ascii_case(EXTENSION));
        loop {
            cur.skip_ows();
            match cur.peek() {
                None | Some(b',') => break,
                Some(b';') => cur.pos += 1,
                Some(_) => return Err(Malformed),
            }
            cur.skip_ows();
            let param = cur.token()?;
            cur.skip_ows();
            let value = if cur.peek() == Some(b'=') {
                cur.pos += 1;
                cur.skip_ows();
                Some(cur.value()?)
            } else {
                None
            };
            offer.add(param, value);
        }
        if chosen.is_none() {
            chosen = offer.params();
        }
    }
}

const EXTENSION: &[u8] = b"permessage-deflate";

/// One offer's parameters, checked as they are read.
struct Offer {
    /// Still a `permessage-deflate` offer the relay can honour.
    acceptable: bool,
    /// Bit per known parameter already seen, to refuse duplicates.
    seen: u8,
    server_max_window_bits: Option<WindowBits>,
}

impl Offer {
    fn new(is_deflate: bool) -> Offer {
        Offer {
            acceptable: is_deflate,
            seen: 0,
            server_max_window_bits: None,
        }
    }

    fn add(&mut self, name: &[u8], value: Option<Value<'_>>) {
        let Some(bit) = PARAMS.iter().position(|p| name.eq_ignore_ascii_case(p)) else {
            self.acceptable = false;
            return;
        };
        if self.seen & (1 << bit) != 0 {
            self.acceptable = false;
            return;
        }
        self.seen |= 1 << bit;
        let valid = match (PARAMS[bit], value) {
            (SERVER_NO_CONTEXT_TAKEOVER | CLIENT_NO_CONTEXT_TAKEOVER, value) => value.is_none(),
            (SERVER_MAX_WINDOW_BITS, Some(v)) => match v.window_bits() {
                Some(bits) => {
                    self.server_max_window_bits = Some(bits);
                    true
                }
                None => false,
            },
            (SERVER_MAX_WINDOW_BITS, None) => false,
            (_client_max_window_bits, None) => true,
            (_client_max_window_bits, Some(v)) => v.window_bits().is_some(),
        };
        self.acceptable &= valid;
    }

    fn params(&self) -> Option<DeflateParams> {
        self.acceptable.then_some(DeflateParams {
            server_max_window_bits: self.server_max_window_bits,
        })
    }
}

const SERVER_NO_CONTEXT_TAKEOVER: &[u8] = b"server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &[u8] = b"client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &[u8] = b"server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &[u8] = b"client_max_window_bits";
/// The parameters RFC 7692 section 7.1 defines; any other declines the offer.
const PARAMS: [&[u8]; 4] = [
    SERVER_NO_CONTEXT_TAKEOVER,
    CLIENT_NO_CONTEXT_TAKEOVER,
    SERVER_MAX_WINDOW_BITS,
    CLIENT_MAX_WINDOW_BITS,
];

/// A parameter value as written: a token, or the inside of a quoted-string
/// with its escapes still in.
#[derive(Clone, Copy)]
enum Value<'a> {
    Token(&'a [u8]),
    Quoted(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The value as a window size: a decimal 8 to 15 without leading zeros
    /// (RFC 7692 section 7.1.2.1), after unescaping a quoted form.
    fn window_bits(self) -> Option<WindowBits> {
        let mut digits = [0u8; 2];
        let mut n = 0;
        for b in self.bytes() {
            *digits.get_mut(n)? = b;
            n += 1;
        }
        let value = match digits[..n] {
            [d @ b'8'..=b'9'] => d - b'0',
            [b'1', d @ b'0'..=b'5'] => 10 + d - b'0',
            _ => return None,
        };
        WindowBits::new(value)
    }

    /// The unescaped bytes.
    fn bytes(self) -> impl Iterator<Item = u8> + 'a {
        let (raw, quoted) = match self {
            Value::Token(t) => (t, false),
            Value::Quoted(q) => (q, true),
        };
        let mut escaped = false;
        raw.iter().filter_map(move |&b| {
            if quoted && !escaped && b == b'\\' {
                escaped = true;
                return None;
            }
            escaped = false;
            Some(b)
        })
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<&'a [u8], Malformed> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match &self.s[start..self.pos] {
            [] => Err(Malformed),
            t => Ok(t),
        }
    }

    /// A token or a quoted-string (RFC 7230 section 3.2.6). A quoted value
    /// that is not a token once unescaped is well-formed HTTP but an invalid
    /// extension value: it only declines its offer.
    fn value(&mut self) -> Result<Value<'a>, Malformed> {
        if self.peek() != Some(b'"') {
            return self.token().map(Value::Token);
        }
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek().ok_or(Malformed)? {
                b'"' => break,
                b'\\' => {
                    self.pos += 1;
                    match self.peek().ok_or(Malformed)? {
                        b'\t' | b' '..=b'~' | 0x80..=0xFF => self.pos += 1,
                        _ => return Err(Malformed),
                    }
                }
                b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF => self.pos += 1,
                _ => return Err(Malformed),
            }
        }
        let inner = &self.s[start..self.pos];
        self.pos += 1;
        Ok(Value::Quoted(inner))
    }
}

/// RFC 7230 section 3.2.6 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

macro_rules! response {
    () => {
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    };
    ($bits:literal) => {
        concat!(response!(), "; server_max_window_bits=", $bits)
    };
}

const RESPONSE: &str = response!();
/// Indexed by window bits minus 8.
const RESPONSE_WITH_WINDOW: [&str; 8] = [
    response!(8),
    response!(9),
    response!(10),
    response!(11),
    response!(12),
    response!(13),
    response!(14),
    response!(15),
];

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    fn answer(headers: &[&str]) -> Option<&'static str> {
        negotiate(headers.iter().map(|h| h.as_bytes())).map(|p| p.response())
    }

    fn with_window(bits: u8) -> String {
        format!("{PLAIN}; server_max_window_bits={bits}")
    }

    /// One row per case: the request's extension headers, then the answer
    /// (`None`: declined, the upgrade goes ahead without compression).
    #[test]
    fn negotiation_table() {
        let w = |bits| Some(with_window(bits));
        let plain = Some(PLAIN.to_string());
        let rows: Vec<(&[&str], Option<String>)> = vec![
            // No offer.
            (&[], None),
            (&[""], None),
            (&["  ,  , "], None),
            (&["x-webkit-deflate-frame"], None),
            // A plain offer, and the two no-context-takeover flags.
            (&["permessage-deflate"], plain.clone()),
            (&["permessage-deflate; server_no_context_takeover"], plain.clone()),
            (&["permessage-deflate; client_no_context_takeover"], plain.clone()),
            (
                &["permessage-deflate;server_no_context_takeover;client_no_context_takeover"],
                plain.clone(),
            ),
            // Browsers: Chrome and Firefox send exactly this.
            (&["permessage-deflate; client_max_window_bits"], plain.clone()),
            // Window bits: server's echoed, client's accepted and not answered.
            (&["permessage-deflate; server_max_window_bits=10"], w(10)),
            (&["permessage-deflate; server_max_window_bits=8"], w(8)),
            (&["permessage-deflate; server_max_window_bits=15"], w(15)),
            (&["permessage-deflate; client_max_window_bits=8"], plain.clone()),
            (&["permessage-deflate; client_max_window_bits=15"], plain.clone()),
            (
                &["permessage-deflate; client_max_window_bits; server_max_window_bits=9"],
                w(9),
            ),
            // Bad window values (section 7.1.2): out of range, leading zero,
            // missing, not a number.
            (&["permessage-deflate; server_max_window_bits=7"], None),
            (&["permessage-deflate; server_max_window_bits=16"], None),
            (&["permessage-deflate; server_max_window_bits=08"], None),
            (&["permessage-deflate; server_max_window_bits=010"], None),
            (&["permessage-deflate; server_max_window_bits"], None),
            (&["permessage-deflate; server_max_window_bits=x"], None),
            (&["permessage-deflate; server_max_window_bits=-9"], None),
            (&["permessage-deflate; client_max_window_bits=0"], None),
            (&["permessage-deflate; client_max_window_bits=16"], None),
            (&["permessage-deflate; client_max_window_bits=\"\""], None),
            // Flags take no value.
            (&["permessage-deflate; server_no_context_takeover=1"], None),
            (&["permessage-deflate; client_no_context_takeover=\"\""], None),
            // Unknown parameters decline the offer.
            (&["permessage-deflate; foo"], None),
            (&["permessage-deflate; foo=bar"], None),
            (&["permessage-deflate; client_max_window"], None),
            // Duplicates decline the offer (section 7.1).
            (
                &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
                None,
            ),
            (
                &["permessage-deflate; client_max_window_bits; client_max_window_bits=10"],
                None,
            ),
            (
                &["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"],
                None,
            ),
            // Two offers: the first the relay can honour wins.
            (
                &["permessage-deflate; server_max_window_bits=12, permessage-deflate"],
                w(12),
            ),
            (
                &["permessage-deflate; foo, permessage-deflate; server_max_window_bits=11"],
                w(11),
            ),
            (
                &["x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"],
                plain.clone(),
            ),
            (&["permessage-deflate; foo, permessage-deflate; bar"], None),
            // Several headers: in order; a later header is read when an
            // earlier one offers nothing acceptable.
            (
                &[
                    "permessage-deflate; server_max_window_bits=99",
                    "permessage-deflate; server_max_window_bits=13",
                ],
                w(13),
            ),
            (
                &["permessage-deflate", "permessage-deflate; server_max_window_bits=13"],
                plain.clone(),
            ),
            // Quoted values (RFC 7230 quoted-string, a token once unescaped).
            (&["permessage-deflate; server_max_window_bits=\"10\""], w(10)),
            (&["permessage-deflate; server_max_window_bits=\"1\\0\""], w(10)),
            (&["permessage-deflate; client_max_window_bits=\"15\""], plain.clone()),
            (&["permessage-deflate; server_max_window_bits=\"1 0\""], None),
            (
                &["permessage-deflate; foo=\"a, b; c\", permessage-deflate"],
                plain.clone(),
            ),
            // Case: names are compared case-insensitively.
            (&["PerMessage-Deflate; Server_Max_Window_Bits=9"], w(9)),
            (&["permessage-deflate; CLIENT_MAX_WINDOW_BITS"], plain.clone()),
            // Whitespace: OWS around separators, tabs included.
            (
                &["  permessage-deflate ;\tserver_max_window_bits = 11 ; client_max_window_bits  "],
                w(11),
            ),
            (&["permessage-deflate,permessage-deflate"], plain.clone()),
            // Malformed lists offer nothing, not even before the fault.
            (&["permessage-deflate; server_max_window_bits=\"10"], None),
            (&["permessage-deflate server_no_context_takeover"], None),
            (&["permessage-deflate;"], None),
            (&["permessage-deflate; =10"], None),
            (&["permessage-deflate, ; foo"], None),
            (&["permessage-deflate; a=\"\x01\""], None),
            (&["permessage-deflate, @"], None),
            // ...but a well-formed header after a malformed one still counts.
            (&["permessage-deflate;;", "permessage-deflate"], plain.clone()),
        ];
        for (headers, want) in rows {
            assert_eq!(answer(headers), want.as_deref(), "{headers:?}");
        }
    }

    #[test]
    fn agreed_window() {
        let p = negotiate([&b"permessage-deflate; server_max_window_bits=9"[..]]).unwrap();
        assert_eq!(p.server_window(), WindowBits::new(9).unwrap());
        let p = negotiate([&b"permessage-deflate"[..]]).unwrap();
        assert_eq!(p.server_window(), WindowBits::MAX);
        assert_eq!(p.server_max_window_bits, None);
    }

    /// Non-ASCII and control bytes never panic and never accept.
    #[test]
    fn arbitrary_bytes_are_safe() {
        for value in [
            &b"permessage-deflate\xff"[..],
            b"\xff\xfe",
            b"permessage-deflate; server_max_window_bits=\"\xc3\xa9\"",
            b"permessage-deflate; server_max_window_bits=\"\\",
            b"\"",
            b"\\",
        ] {
            assert_eq!(negotiate([value]), None, "{value:?}");
        }
    }
}
