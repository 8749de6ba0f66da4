//! Tape to JSON text, as Python's `json.dumps` writes it with its default
//! arguments: the second half of [`decode_chat_event`](super::decode_chat_event).
//!
//! `", "` and `": "` separators, `ensure_ascii` (only `' '` to `'~'` go out
//! as they are; everything else is a short escape or `\uXXXX` in lower
//! case, surrogate pairs above U+FFFF), every int in full, floats as
//! `float.__repr__` ([`super::float_repr`]). What JSON cannot carry (bin,
//! ext, a bytes key) is [`DecodeError::Unsupported`].

use super::float_repr::write_py_float;
use super::tape::{Node, Tape};
use super::DecodeError;
use crate::backplane::resp::push_decimal;

/// Writes node `at` and its descendants; returns the index after them.
/// Stops with [`DecodeError::TooLarge`] once `out` is longer than `limit`,
/// checked after each element, so at most one element (whose size the
/// reader bounded) is written past it.
pub(super) fn write_json(
    tape: &Tape<'_>,
    at: usize,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, DecodeError> {
    match tape.nodes[at] {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::UInt(n) => push_decimal(out, n),
        Node::Int(n) => {
            out.push(b'-');
            push_decimal(out, n.unsigned_abs());
        }
        Node::Float(f) => write_py_float(out, f),
        Node::Str(span) => write_json_str(out, tape.bytes(span)),
        Node::Bin(_) | Node::Ext(..) | Node::BigInt | Node::LoneSurrogate => {
            return Err(DecodeError::Unsupported)
        }
        Node::Array { len, end } => {
            out.push(b'[');
            let mut next = at + 1;
            for i in 0..len {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                next = write_json(tape, next, out, limit)?;
                if out.len() > limit {
                    return Err(DecodeError::TooLarge);
                }
            }
            out.push(b']');
            return Ok(end as usize);
        }
        Node::Map { end, .. } => {
            out.push(b'{');
            for (i, (k, v)) in tape.entries(at).enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                // bytes keys survive unpackb but not json.dumps.
                let key = tape.str_at(k).ok_or(DecodeError::Unsupported)?;
                write_json_str(out, key);
                out.extend_from_slice(b": ");
                write_json(tape, v, out, limit)?;
                if out.len() > limit {
                    return Err(DecodeError::TooLarge);
                }
            }
            out.push(b'}');
            return Ok(end as usize);
        }
    }
    Ok(at + 1)
}

/// How long [`write_json_str`] writes `s` (valid UTF-8), quotes included,
/// without writing it: one pass, one table lookup a byte.
pub(super) fn json_str_len(s: &[u8]) -> usize {
    2 + s
        .iter()
        .map(|&b| usize::from(ESCAPED_LEN[usize::from(b)]))
        .sum::<usize>()
}

/// What each byte of UTF-8 text becomes in `json.dumps` text: printable
/// ASCII stays (1), short escapes (2), other controls and DEL `\u00XX` (6),
/// a lead byte the `\uXXXX` of its character (6) or surrogate pair (12),
/// continuation bytes nothing more.
const ESCAPED_LEN: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x20..=0x7e => 1,
            0x00..=0x1f | 0x7f => 6,
            0x80..=0xbf => 0,
            0xc0..=0xef => 6,
            _ => 12,
        };
        b += 1;
    }
    table
};

/// `json.dumps` with `ensure_ascii=True`: only ' ' to '~' go out as they are.
/// `s` is UTF-8 (checked when read).
pub(super) fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&s[run..i]);
        if let Some(short) = short_escape(b) {
            out.extend_from_slice(short);
            i += 1;
        } else {
            let (code, width) = decode_char(&s[i..]);
            write_utf16_escapes(out, code);
            i = (i + width).min(s.len());
        }
        run = i;
    }
    out.extend_from_slice(&s[run..]);
    out.push(b'"');
}

fn short_escape(b: u8) -> Option<&'static [u8]> {
    Some(match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => return None,
    })
}

/// The code point at the start of valid UTF-8 `s`, and its length.
fn decode_char(s: &[u8]) -> (u32, usize) {
    let lead = u32::from(s[0]);
    let cont = |k: usize| u32::from(s.get(k).copied().unwrap_or(0x80) & 0x3f);
    match s[0] {
        0x00..=0x7f => (lead, 1),
        0xc0..=0xdf => ((lead & 0x1f) << 6 | cont(1), 2),
        0xe0..=0xef => ((lead & 0x0f) << 12 | cont(1) << 6 | cont(2), 3),
        _ => (
            (lead & 0x07) << 18 | cont(1) << 12 | cont(2) << 6 | cont(3),
            4,
        ),
    }
}

fn write_utf16_escapes(out: &mut Vec<u8>, code: u32) {
    if code >= 0x10000 {
        let v = code - 0x10000;
        write_u_escape(out, 0xd800 | (v >> 10));
        write_u_escape(out, 0xdc00 | (v & 0x3ff));
    } else {
        write_u_escape(out, code);
    }
}

fn write_u_escape(out: &mut Vec<u8>, unit: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[(unit >> shift & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use super::*;

    /// The message part of a payload, and `json.dumps({"message":
    /// msgpack.unpackb(payload)["message"]})` from Python (NaN and
    /// infinities, which Python writes as NaN/Infinity, become null here).
    const DECODED: &[(&str, &str)] = &[
        ("c0", "{\"message\": null}"),
        ("c3", "{\"message\": true}"),
        ("c2", "{\"message\": false}"),
        ("00", "{\"message\": 0}"),
        ("01", "{\"message\": 1}"),
        ("ff", "{\"message\": -1}"),
        ("7f", "{\"message\": 127}"),
        ("cc80", "{\"message\": 128}"),
        ("e0", "{\"message\": -32}"),
        ("d0df", "{\"message\": -33}"),
        ("ccff", "{\"message\": 255}"),
        ("cd0100", "{\"message\": 256}"),
        ("cdffff", "{\"message\": 65535}"),
        ("ce00010000", "{\"message\": 65536}"),
        ("cf0000000100000000", "{\"message\": 4294967296}"),
        ("cf7fffffffffffffff", "{\"message\": 9223372036854775807}"),
        ("cf8000000000000000", "{\"message\": 9223372036854775808}"),
        ("cfffffffffffffffff", "{\"message\": 18446744073709551615}"),
        ("d38000000000000000", "{\"message\": -9223372036854775808}"),
        ("d280000000", "{\"message\": -2147483648}"),
        ("cb3fb999999999999a", "{\"message\": 0.1}"),
        ("cb4341c37937e08000", "{\"message\": 1e+16}"),
        ("cb430c6bf526340000", "{\"message\": 1000000000000000.0}"),
        ("cb3ee4f8b588e368f1", "{\"message\": 1e-05}"),
        ("cb3f1a36e2eb1c432d", "{\"message\": 0.0001}"),
        ("cb3f202c9dedbc309d", "{\"message\": 0.0001234}"),
        ("cb4480f0cf064dd592", "{\"message\": 1e+22}"),
        ("cb0000000000000001", "{\"message\": 5e-324}"),
        (
            "cb7fefffffffffffff",
            "{\"message\": 1.7976931348623157e+308}",
        ),
        ("cb8000000000000000", "{\"message\": -0.0}"),
        ("cb0000000000000000", "{\"message\": 0.0}"),
        ("cb4059000000000000", "{\"message\": 100.0}"),
        ("cb419d6f34547df3b6", "{\"message\": 123456789.123}"),
        ("cb3e8421f5f40d8376", "{\"message\": 1.5e-07}"),
        ("cb54b249ad2594c37d", "{\"message\": 1e+100}"),
        ("cb81bac9a7b3b7302f", "{\"message\": -2.5e-300}"),
        (
            "cb4345ee2a2eb5a5c4",
            "{\"message\": 1.2345678901234568e+16}",
        ),
        ("cb3fe0000000000000", "{\"message\": 0.5}"),
        ("a0", "{\"message\": \"\"}"),
        ("a5706c61696e", "{\"message\": \"plain\"}"),
        ("a67122625c732f", "{\"message\": \"q\\\"b\\\\s/\"}"),
        (
            "ab0a0d09080c00011f7fc280",
            "{\"message\": \"\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f\\u007f\\u0080\"}",
        ),
        (
            "acc3a9e697a5e69cacf09f9880",
            "{\"message\": \"\\u00e9\\u65e5\\u672c\\ud83d\\ude00\"}",
        ),
        (
            "aae280a8efbbbff48fbfbf",
            "{\"message\": \"\\u2028\\ufeff\\udbff\\udfff\"}",
        ),
        ("a27e20", "{\"message\": \"~ \"}"),
        ("90", "{\"message\": []}"),
        ("9301a161c0", "{\"message\": [1, \"a\", null]}"),
        ("80", "{\"message\": {}}"),
        (
            "82a16101a16292c381a163a164",
            "{\"message\": {\"a\": 1, \"b\": [true, {\"c\": \"d\"}]}}",
        ),
        (
            "81a2c3a9a2c3bc",
            "{\"message\": {\"\\u00e9\": \"\\u00fc\"}}",
        ),
        ("919190", "{\"message\": [[[]]]}"),
        ("81a0a0", "{\"message\": {\"\": \"\"}}"),
        ("d005", "{\"message\": 5}"),
        ("cf0000000000000005", "{\"message\": 5}"),
        ("d1fffe", "{\"message\": -2}"),
        ("d9016b", "{\"message\": \"k\"}"),
        ("ca3dcccccd", "{\"message\": 0.10000000149011612}"),
        ("ca7f800000", "{\"message\": Infinity}"),
        ("caff800000", "{\"message\": -Infinity}"),
        ("ca7fc00000", "{\"message\": NaN}"),
        ("cb7ff8000000000000", "{\"message\": NaN}"),
        ("cb7ff0000000000000", "{\"message\": Infinity}"),
        ("cbfff0000000000000", "{\"message\": -Infinity}"),
        ("ca00000001", "{\"message\": 1.401298464324817e-45}"),
        (
            "83a16101a16202a16103",
            "{\"message\": {\"a\": 3, \"b\": 2}}",
        ),
        ("82a16101a16101", "{\"message\": {\"a\": 1}}"),
        (
            "83a178c0a17901a17882a17a01a17a02",
            "{\"message\": {\"x\": {\"z\": 2}, \"y\": 1}}",
        ),
        ("dc0002c0c2", "{\"message\": [null, false]}"),
        ("dd00000001c3", "{\"message\": [true]}"),
        ("de0001a16101", "{\"message\": {\"a\": 1}}"),
        ("df00000000", "{\"message\": {}}"),
        ("da000161", "{\"message\": \"a\"}"),
        ("db0000000162", "{\"message\": \"b\"}"),
    ];

    #[test]
    fn decode_matches_python() {
        for &(message, python) in DECODED {
            let want = python
                .replace("-Infinity", "null")
                .replace("Infinity", "null")
                .replace("NaN", "null");
            assert_eq!(decode(&event(message)).as_deref(), Ok(&*want), "{message}");
        }
    }

    #[test]
    fn decode_big_containers() {
        for n in [15, 16, 65535, 65536] {
            let mut payload = Vec::new();
            encode_chat_event(&big_array(n), &mut payload).unwrap();
            let want = format!("{{\"message\": [{}]}}", vec!["null"; n].join(", "));
            assert_eq!(decode(&payload), Ok(want));
            payload.clear();
            encode_chat_event(&big_object(n), &mut payload).unwrap();
            let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\": {i}")).collect();
            assert_eq!(
                decode(&payload),
                Ok(format!("{{\"message\": {{{}}}}}", members.join(", ")))
            );
        }
    }

    #[test]
    fn json_str_len_is_what_write_json_str_writes() {
        let mut all = String::new();
        for c in (0..0xd800).chain(0xe000..0x11_0000).step_by(3) {
            let ch = char::from_u32(c).unwrap();
            all.push(ch);
            let mut out = Vec::new();
            let mut buf = [0; 4];
            let one = ch.encode_utf8(&mut buf).as_bytes();
            write_json_str(&mut out, one);
            assert_eq!(json_str_len(one), out.len(), "U+{c:04X}");
        }
        let mut out = Vec::new();
        write_json_str(&mut out, all.as_bytes());
        assert_eq!(json_str_len(all.as_bytes()), out.len());
    }

    #[test]
    fn decode_escapes_every_code_point_as_python() {
        // Python: json.dumps(chr(c)) for every c is '"' + escape + '"'.
        for c in (0..0xd800)
            .chain(0xe000..0x11_0000)
            .step_by(7)
            .chain([0x22, 0x5c, 0x7f, 0xffff, 0x10000, 0x10ffff])
        {
            let ch = char::from_u32(c).unwrap();
            let mut s = String::new();
            write_json_str_for_test(&mut s, ch);
            let want = match ch {
                '"' => "\"\\\"\"".to_string(),
                '\\' => "\"\\\\\"".to_string(),
                '\n' => "\"\\n\"".to_string(),
                '\r' => "\"\\r\"".to_string(),
                '\t' => "\"\\t\"".to_string(),
                '\u{8}' => "\"\\b\"".to_string(),
                '\u{c}' => "\"\\f\"".to_string(),
                ' '..='~' => format!("\"{ch}\""),
                _ => {
                    let mut units = [0u16; 2];
                    let units: Vec<String> = ch
                        .encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect();
                    format!("\"{}\"", units.concat())
                }
            };
            assert_eq!(s, want, "U+{c:04X}");
        }
    }

    fn write_json_str_for_test(s: &mut String, ch: char) {
        let mut out = Vec::new();
        let mut buf = [0; 4];
        write_json_str(&mut out, ch.encode_utf8(&mut buf).as_bytes());
        s.push_str(std::str::from_utf8(&out).unwrap());
    }
}
