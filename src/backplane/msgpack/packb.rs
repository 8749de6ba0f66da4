//! Tape to msgpack, as `msgpack.packb` writes it: the second half of
//! [`encode_chat_event`](super::encode_chat_event).
//!
//! Always the smallest form: fixint and the narrowest int, float64 for every
//! float, str8/16/32, fix/16/32 arrays and maps. Maps are written in dict
//! order; values `packb` refuses (an int past 64 bits, a lone surrogate)
//! are errors here, and only here, so a repeated key can drop them first.

use super::tape::{Node, Tape};
use super::EncodeError;

/// Writes node `at` and its descendants; returns the index after them.
pub(super) fn write_msgpack(
    tape: &Tape<'_>,
    at: usize,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    match tape.nodes[at] {
        Node::Null => out.push(0xc0),
        Node::Bool(b) => out.push(0xc2 | u8::from(b)),
        Node::UInt(n) => write_uint(out, n),
        Node::Int(n) => write_int(out, n),
        Node::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Node::Str(span) => {
            write_header(
                out,
                span.len,
                Some((0xa0, 32)),
                [Some(0xd9), Some(0xda), Some(0xdb)],
            );
            out.extend_from_slice(tape.bytes(span));
        }
        Node::Bin(span) => {
            write_header(out, span.len, None, [Some(0xc4), Some(0xc5), Some(0xc6)]);
            out.extend_from_slice(tape.bytes(span));
        }
        Node::Ext(kind, span) => write_ext(out, kind, tape.bytes(span)),
        Node::BigInt => return Err(EncodeError::IntegerOutOfRange),
        // Python's packb: UnicodeEncodeError, surrogates not allowed.
        Node::LoneSurrogate => return Err(EncodeError::InvalidJson),
        Node::Array { len, end } => {
            write_header(out, len, Some((0x90, 16)), [None, Some(0xdc), Some(0xdd)]);
            let mut next = at + 1;
            for _ in 0..len {
                next = write_msgpack(tape, next, out)?;
            }
            return Ok(end as usize);
        }
        Node::Map { len, end, .. } => {
            write_header(out, len, Some((0x80, 16)), [None, Some(0xde), Some(0xdf)]);
            for (k, v) in tape.entries(at) {
                write_msgpack(tape, k, out)?;
                write_msgpack(tape, v, out)?;
            }
            return Ok(end as usize);
        }
    }
    Ok(at + 1)
}

/// The smallest header for `len`: a fix form below `fix.1`, else the first
/// of the 8/16/32-bit forms that the type has and `len` fits.
fn write_header(out: &mut Vec<u8>, len: u32, fix: Option<(u8, u32)>, sized: [Option<u8>; 3]) {
    if let Some((base, _)) = fix.filter(|&(_, limit)| len < limit) {
        out.push(base | len as u8);
    } else if let (Some(code), Ok(n)) = (sized[0], u8::try_from(len)) {
        out.extend_from_slice(&[code, n]);
    } else if let (Some(code), Ok(n)) = (sized[1], u16::try_from(len)) {
        out.push(code);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Some(code) = sized[2] {
        out.push(code);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

fn write_ext(out: &mut Vec<u8>, kind: i8, data: &[u8]) {
    let fixed = match data.len() {
        1 => Some(0xd4),
        2 => Some(0xd5),
        4 => Some(0xd6),
        8 => Some(0xd7),
        16 => Some(0xd8),
        _ => None,
    };
    match fixed {
        Some(code) => out.push(code),
        None => write_header(
            out,
            data.len() as u32,
            None,
            [Some(0xc7), Some(0xc8), Some(0xc9)],
        ),
    }
    out.push(kind as u8);
    out.extend_from_slice(data);
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    if let Ok(n) = u64::try_from(n) {
        write_uint(out, n);
    } else if n >= -32 {
        out.push(n as u8);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::unpackb::MsgpackReader;
    use super::*;

    /// JSON text, and the hex of `msgpack.packb({"type": "chat_message",
    /// "message": json.loads(text)})` after the common prefix, from Python.
    const ENCODED: &[(&str, &str)] = &[
        (r#"null"#, "c0"),
        (r#"true"#, "c3"),
        (r#"false"#, "c2"),
        (r#"0"#, "00"),
        (r#"-0"#, "00"),
        (r#"1"#, "01"),
        (r#"-1"#, "ff"),
        (r#"31"#, "1f"),
        (r#"32"#, "20"),
        (r#"-31"#, "e1"),
        (r#"-32"#, "e0"),
        (r#"-33"#, "d0df"),
        (r#"127"#, "7f"),
        (r#"128"#, "cc80"),
        (r#"-128"#, "d080"),
        (r#"-129"#, "d1ff7f"),
        (r#"255"#, "ccff"),
        (r#"256"#, "cd0100"),
        (r#"-32768"#, "d18000"),
        (r#"-32769"#, "d2ffff7fff"),
        (r#"65535"#, "cdffff"),
        (r#"65536"#, "ce00010000"),
        (r#"2147483647"#, "ce7fffffff"),
        (r#"2147483648"#, "ce80000000"),
        (r#"-2147483648"#, "d280000000"),
        (r#"-2147483649"#, "d3ffffffff7fffffff"),
        (r#"4294967295"#, "ceffffffff"),
        (r#"4294967296"#, "cf0000000100000000"),
        (r#"9223372036854775807"#, "cf7fffffffffffffff"),
        (r#"9223372036854775808"#, "cf8000000000000000"),
        (r#"-9223372036854775808"#, "d38000000000000000"),
        (r#"18446744073709551615"#, "cfffffffffffffffff"),
        (r#"0.1"#, "cb3fb999999999999a"),
        (r#"1e16"#, "cb4341c37937e08000"),
        (r#"1e-5"#, "cb3ee4f8b588e368f1"),
        (r#"1e22"#, "cb4480f0cf064dd592"),
        (r#"5e-324"#, "cb0000000000000001"),
        (r#"1.7976931348623157e308"#, "cb7fefffffffffffff"),
        (r#"-0.0"#, "cb8000000000000000"),
        (r#"100.0"#, "cb4059000000000000"),
        (r#"123456789.123"#, "cb419d6f34547df3b6"),
        (r#"1E2"#, "cb4059000000000000"),
        (r#"1e400"#, "cb7ff0000000000000"),
        (r#"-1e400"#, "cbfff0000000000000"),
        (r#"1e-400"#, "cb0000000000000000"),
        (r#"2.5e-3"#, "cb3f647ae147ae147b"),
        (r#"0.30000000000000004"#, "cb3fd3333333333334"),
        (r#""""#, "a0"),
        (r#""a""#, "a161"),
        (r#""\u00e9""#, "a2c3a9"),
        (r#""\ud83d\ude00""#, "a4f09f9880"),
        (r#""\"\\\/\b\f\n\r\t""#, "a8225c2f080c0a0d09"),
        (r#""\u0000""#, "a100"),
        (r#""héllo wörld 日本 😀""#, "b968c3a96c6c6f2077c3b6726c6420e697a5e69cac20f09f9880"),
        (r#"[]"#, "90"),
        (r#"[1,2,3]"#, "93010203"),
        (r#"{}"#, "80"),
        (r#"{"a":1}"#, "81a16101"),
        (r#" { "a" : [ 1 , { } ] , "b" : null } "#, "82a161920180a162c0"),
        (r#"{"a":1,"b":2,"a":3}"#, "82a16103a16202"),
        (r#"{"x":{"k":1,"k":{"z":[1]}},"y":0,"x":false}"#, "82a178c2a17900"),
        (r#"{"\u0061":1,"a":2}"#, "81a16102"),
        (r#"[[[[]]]]"#, "91919190"),
        (r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k3":"x","k0":null}"#, "8aa26b30c0a26b3101a26b3202a26b33a178a26b3404a26b3505a26b3606a26b3707a26b3808a26b3909"),
        (r#"[{"a":1,"a":2},{"b":[{"c":1,"c":{"d":1,"d":2}}]}]"#, "9281a1610281a1629181a16381a16402"),
        (r#""\u00E9\uD83D\uDE00\u20ac""#, "a9c3a9f09f9880e282ac"),
        (r#"[1e400,-0,-0.0,0e0,1E+2,1e-2]"#, "96cb7ff000000000000000cb8000000000000000cb0000000000000000cb4059000000000000cb3f847ae147ae147b"),
        (r#"{"message":"hi","type":"x"}"#, "82a76d657373616765a26869a474797065a178"),
    ];

    #[test]
    fn encode_matches_python() {
        for &(json, want) in ENCODED {
            assert_eq!(encode(json), Ok(hex(want)), "{json}");
        }
    }

    /// Header bytes and total length of each size class, from Python:
    /// strings of n bytes ("é" * (n // 2) + "x" * (n % 2)), n Nones, and
    /// {"k0": 0, ...}.
    #[test]
    fn encode_size_classes_match_python() {
        let string = |n: usize| format!("\"{}{}\"", "é".repeat(n / 2), "x".repeat(n % 2));
        let cases: Vec<(String, &str, usize)> = vec![
            (string(31), "bfc3a9c3a9", 32),
            (string(32), "d920c3a9c3", 34),
            (string(255), "d9ffc3a9c3", 257),
            (string(256), "da0100c3a9", 259),
            (string(65535), "daffffc3a9", 65538),
            (string(65536), "db00010000", 65541),
            (big_array(15), "9fc0c0c0c0", 16),
            (big_array(16), "dc0010c0c0", 19),
            (big_array(65535), "dcffffc0c0", 65538),
            (big_array(65536), "dd00010000", 65541),
            (big_object(15), "8fa26b3000a26b31", 66),
            (big_object(16), "de0010a26b3000a2", 73),
            (big_object(65535), "deffffa26b3000a2", 643859),
            (big_object(65536), "df00010000a26b30", 643871),
        ];
        for (json, head, len) in cases {
            let got = encode(&json).unwrap();
            assert_eq!((&got[..head.len() / 2], got.len()), (&hex(head)[..], len));
        }
    }

    #[test]
    fn encode_big_objects_with_repeats_keep_dict_order() {
        // 70,000 keys, each written twice: the first positions, the last values.
        let n = 70_000;
        let mut members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
        members.extend((0..n).map(|i| format!("\"k{i}\":{}", i % 100)));
        let got = encode(&format!("{{{}}}", members.join(","))).unwrap();
        let mut want = vec![0xdf, 0, 1, 0x11, 0x70];
        for i in 0..n {
            let key = format!("k{i}");
            want.push(0xa0 | key.len() as u8);
            want.extend(key.as_bytes());
            want.push((i % 100) as u8);
        }
        assert_eq!(got, want);
    }

    /// Canonical msgpack (as packb writes it) read into a tape and written
    /// back is the same bytes: the reader and writer agree on every form.
    #[test]
    fn msgpack_tape_round_trip() {
        for payload in [
            "c0",
            "c2",
            "c3",
            "00",
            "7f",
            "cc80",
            "cdffff",
            "ce00010000",
            "cf0000000100000000",
            "e0",
            "d0df",
            "d1ff7f",
            "d2ffff7fff",
            "d38000000000000000",
            "cb3fb999999999999a",
            "a0",
            "bf",
            "d920",
            "da0100",
            "db00010000",
            "c400",
            "c5ffff",
            "c600010000",
            "d40102",
            "d5010203",
            "d6ff00000001",
            "d70100",
            "d801",
            "c70001",
            "c70301616263",
            "c8010001",
            "c90001000001",
            "90",
            "9f",
            "dc0010",
            "80",
            "8f",
            "de0010",
        ] {
            let mut bytes = hex(payload);
            // Pad the declared contents so that the value is whole.
            let filler = |n: usize| vec![0xc0; n];
            let need = match bytes[0] {
                0xbf => 31,
                0xd9 => 32,
                0xda => 256,
                0xdb => 65536,
                0xc5 => 65535,
                0xc6 => 65536,
                0xd4 => 0,
                0xd5 => 0,
                0xd7 => 7,
                0xd8 => 16,
                0xc7 => 0,
                0xc8 => 256,
                0xc9 => 65536,
                0x9f => 15,
                0xdc => 16,
                0x8f => 30,
                0xde => 32,
                _ => 0,
            };
            if matches!(bytes[0], 0x8f | 0xde) {
                for i in 0..need / 2 {
                    bytes.extend([0xa2, b'k', b'a' + (i as u8)]);
                    bytes.push(0xc0);
                }
            } else if matches!(bytes[0], 0xbf | 0xd9 | 0xda | 0xdb) {
                bytes.extend(vec![b'x'; need]);
            } else {
                bytes.extend(filler(need));
            }
            let tape = MsgpackReader::read(&bytes).expect(payload);
            let mut out = Vec::new();
            assert_eq!(write_msgpack(&tape, 0, &mut out), Ok(tape.nodes.len()));
            assert_eq!(out, bytes, "{payload}");
        }
    }
}
