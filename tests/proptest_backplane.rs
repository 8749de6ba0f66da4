//! Property tests for the Redis backplane's sans-IO pieces: the Channels
//! event codec (`msgpack`) and the Redis protocol (`resp`).
//!
//! The expected values come from the test's own model, never from the code
//! under test: JSON values are generated as trees (objects may repeat keys)
//! and rendered to text here, Python's dict semantics are applied to the tree
//! here, and RESP values are written by an encoder here that also uses the
//! wire forms a server may send but `resp::write_value` never writes
//! (attributes, verbatim strings, RESP2 nulls, `+` signs, leading zeros).
//!
//! Cases per property default to a few hundred so the file runs in seconds;
//! `PROPTEST_CASES=20000 cargo test --release --test proptest_backplane`
//! digs deeper.

mod prop_support;

use prop_support::{config, cuts};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use roomcast::backplane::msgpack::{self, DecodeError, EncodeError, MAX_DEPTH};
use roomcast::backplane::resp::{self, Limits, RespError, Value};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;

// ---- the event codec -----------------------------------------------------

/// A JSON value as text holds it: objects keep their order and repeats.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl PartialEq for J {
    fn eq(&self, other: &J) -> bool {
        match (self, other) {
            (J::Null, J::Null) => true,
            (J::Bool(a), J::Bool(b)) => a == b,
            (J::Int(a), J::Int(b)) => a == b,
            (J::Float(a), J::Float(b)) => close(*a, *b),
            (J::Str(a), J::Str(b)) => a == b,
            (J::Arr(a), J::Arr(b)) => a == b,
            (J::Obj(a), J::Obj(b)) => a == b,
            _ => false,
        }
    }
}

/// Equal, or next to each other: serde_json (without its `float_roundtrip`
/// feature) may read the last digit one step off. The exact text is
/// checked by `floats_read_back_in_repr_layout`, with Rust's parser.
fn close(a: f64, b: f64) -> bool {
    a == b
        || (a.is_sign_negative() == b.is_sign_negative() && a.to_bits().abs_diff(b.to_bits()) <= 2)
}

/// serde_json `Value`s equal up to [`close`] floats.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
            x.is_f64() == y.is_f64() && close(x.as_f64().unwrap(), y.as_f64().unwrap())
        }
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

/// Renders JSON text, with whitespace between tokens when `spaced`.
fn render(j: &J, spaced: bool, out: &mut String) {
    let ws = if spaced { " \n\t" } else { "" };
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Int(i) => out.push_str(&i.to_string()),
        // serde_json's shortest round-trip text (ryu), e.g. "1e16", "-0.0".
        J::Float(f) => out.push_str(&serde_json::Value::from(*f).to_string()),
        J::Str(s) => out.push_str(&escape(s)),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                render(item, spaced, out);
            }
            out.push_str(ws);
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws);
                out.push_str(&escape(k));
                out.push_str(ws);
                out.push(':');
                out.push_str(ws);
                render(v, spaced, out);
            }
            out.push_str(ws);
            out.push('}');
        }
    }
}

/// JSON string text, sometimes with every character as `\u` escapes (which
/// exercises surrogate pairs).
fn escape(s: &str) -> String {
    if s.len() % 3 == 1 {
        let mut out = String::from("\"");
        let mut units = [0u16; 2];
        for c in s.chars() {
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04X}"));
            }
        }
        out.push('"');
        return out;
    }
    serde_json::Value::from(s).to_string()
}

/// What Python holds after `json.loads`: each object a dict, where a
/// repeated key keeps its first position and takes its last value.
fn python_dict(j: &J) -> J {
    match j {
        J::Arr(items) => J::Arr(items.iter().map(python_dict).collect()),
        J::Obj(members) => {
            let mut dict: Vec<(String, J)> = Vec::new();
            for (k, v) in members {
                let v = python_dict(v);
                match dict.iter_mut().find(|(key, _)| key == k) {
                    Some(slot) => slot.1 = v,
                    None => dict.push((k.clone(), v)),
                }
            }
            J::Obj(dict)
        }
        other => other.clone(),
    }
}

/// Whether the value (after dict semantics) holds an int msgpack cannot.
fn out_of_range(j: &J) -> bool {
    match j {
        J::Int(i) => *i < i128::from(i64::MIN) || *i > i128::from(u64::MAX),
        J::Arr(items) => items.iter().any(out_of_range),
        J::Obj(members) => members.iter().any(|(_, v)| out_of_range(v)),
        _ => false,
    }
}

/// Reads JSON text into a [`J`], keeping order and repeats (serde_json's
/// `Value` would sort keys and keep only one of each).
impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E: de::Error>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<J, E> {
        Ok(J::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<J, E> {
        Ok(J::Int(i.into()))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<J, E> {
        Ok(J::Int(u.into()))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<J, E> {
        Ok(J::Float(f))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<J, E> {
        Ok(J::Str(s.to_string()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(J::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut members = Vec::new();
        while let Some(entry) = map.next_entry::<String, J>()? {
            members.push(entry);
        }
        Ok(J::Obj(members))
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "message", "type", "é", "😀", ""])
            .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn int() -> impl Strategy<Value = i128> {
    prop_oneof![
        any::<i64>().prop_map(i128::from),
        any::<u64>().prop_map(i128::from),
        prop::sample::select(vec![
            0i128,
            31,
            32,
            -32,
            -33,
            127,
            128,
            -128,
            -129,
            255,
            256,
            65535,
            65536,
            -32768,
            -32769,
            1 << 32,
            i64::MIN.into(),
            u64::MAX.into(),
        ]),
        // Outside msgpack's range (Python: OverflowError in packb).
        prop::sample::select(vec![
            i128::from(u64::MAX) + 1,
            i128::from(i64::MIN) - 1,
            10i128.pow(30),
        ]),
        (-100i128..100),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()),
        prop::sample::select(vec![
            0.1,
            1e16,
            1e15,
            1e-5,
            1e-4,
            1e22,
            5e-324,
            1.7976931348623157e308,
            -0.0,
            100.0
        ]),
        (-1e6f64..1e6),
    ]
}

fn json(ints: impl Strategy<Value = i128> + 'static) -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        ints.prop_map(J::Int),
        float().prop_map(J::Float),
        any::<String>().prop_map(J::Str),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(J::Arr),
            vec((key(), inner), 0..8).prop_map(J::Obj),
        ]
    })
}

fn decoded(payload: &[u8]) -> Result<J, DecodeError> {
    let mut out = Vec::new();
    msgpack::decode_chat_event(payload, &mut out)?;
    assert!(
        out.iter().all(|&b| (0x20..0x7f).contains(&b)),
        "ensure_ascii"
    );
    let text = std::str::from_utf8(&out).unwrap();
    Ok(serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

fn message(j: J) -> J {
    J::Obj(vec![("message".to_string(), j)])
}

/// A delivered frame's message and, if any, user, as raw JSON texts.
fn frame_parts(text: &str) -> (String, Option<String>) {
    let mut map: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text).unwrap();
    let message = map.remove("message").expect("a message").get().to_string();
    let user = map.remove("user").map(|u| u.get().to_string());
    assert!(map.is_empty(), "only message and user: {text}");
    let mut want = format!("{{\"message\": {message}");
    if let Some(user) = &user {
        want.push_str(&format!(", \"user\": {user}"));
    }
    want.push('}');
    assert_eq!(want, text, "message first, then user");
    (message, user)
}

/// Encodes a message (and user) again, as a relay would publish it.
fn encode_again(message: &str, user: Option<&str>) -> Vec<u8> {
    let mut payload = Vec::new();
    match user {
        Some(user) => msgpack::encode_chat_event_with_user(message, user, &mut payload),
        None => msgpack::encode_chat_event(message, &mut payload),
    }
    .unwrap();
    payload
}

proptest! {
    #![proptest_config(config(256))]

    /// encode then decode gives {"message": v} as Python's dict holds v.
    #[test]
    fn event_round_trip(j in json(int()), spaced in any::<bool>()) {
        let mut text = String::new();
        render(&j, spaced, &mut text);
        let mut payload = b"kept".to_vec();
        let result = msgpack::encode_chat_event(&text, &mut payload);
        let want = python_dict(&j);
        if out_of_range(&want) {
            prop_assert_eq!(result, Err(EncodeError::IntegerOutOfRange));
            prop_assert_eq!(payload, b"kept");
            return Ok(());
        }
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(decoded(&payload[4..]), Ok(message(want)));
    }

    /// SPEC section 9: with an identity, encode then decode gives
    /// {"message": v, "user": u} as Python's dicts hold them; the message's
    /// range errors come first, then the user's.
    #[test]
    fn event_with_user_round_trip(m in json(int()), u in json(int()), spaced in any::<bool>()) {
        let (mut text, mut user) = (String::new(), String::new());
        render(&m, spaced, &mut text);
        render(&u, spaced, &mut user);
        let mut payload = b"kept".to_vec();
        let result = msgpack::encode_chat_event_with_user(&text, &user, &mut payload);
        let (want_m, want_u) = (python_dict(&m), python_dict(&u));
        if out_of_range(&want_m) || out_of_range(&want_u) {
            prop_assert_eq!(result, Err(EncodeError::IntegerOutOfRange));
            prop_assert_eq!(payload, b"kept");
            return Ok(());
        }
        prop_assert_eq!(result, Ok(()));
        let want = J::Obj(vec![("message".to_string(), want_m), ("user".to_string(), want_u)]);
        prop_assert_eq!(decoded(&payload[4..]), Ok(want));
    }

    /// serde_json's own text of a `Value` (sorted keys, its escapes).
    #[test]
    fn event_round_trip_serde_text(j in json(any::<i64>().prop_map(i128::from))) {
        let mut text = String::new();
        render(&j, false, &mut text);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let text = serde_json::to_string_pretty(&value).unwrap();
        let mut payload = Vec::new();
        msgpack::encode_chat_event(&text, &mut payload).unwrap();
        let mut out = Vec::new();
        msgpack::decode_chat_event(&payload, &mut out).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let want = serde_json::json!({ "message": value });
        prop_assert!(same(&back, &want), "{} != {}", back, want);
    }

    /// Floats come out as Python's repr: they read back exactly, positional
    /// for 1e-4 <= |f| < 1e16 (with a '.'), else d.ddde+XX.
    #[test]
    fn floats_read_back_in_repr_layout(f in float()) {
        let mut payload = Vec::new();
        msgpack::encode_chat_event(&serde_json::Value::from(f).to_string(), &mut payload).unwrap();
        let mut out = Vec::new();
        msgpack::decode_chat_event(&payload, &mut out).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        let number = &text["{\"message\": ".len()..text.len() - 1];
        prop_assert_eq!(number.parse::<f64>().unwrap().to_bits(), f.to_bits());
        let positional = f == 0.0 || (1e-4..1e16).contains(&f.abs());
        if positional {
            prop_assert!(number.contains('.') && !number.contains('e'), "{}", number);
        } else {
            let (_, exponent) = number.split_once('e').unwrap();
            prop_assert!(exponent.starts_with(['+', '-']) && exponent.len() >= 3, "{}", number);
        }
    }

    /// Arbitrary text never panics; what serde_json reads, encode carries
    /// (or refuses as out of range: serde reads big integers as floats).
    #[test]
    fn encode_arbitrary_text(text in prop_oneof![
        any::<String>(),
        "[ {}\\[\\]\":,a-z0-9.eE+\\\\u-]{0,40}",
    ]) {
        let mut payload = Vec::new();
        let result = msgpack::encode_chat_event(&text, &mut payload);
        if serde_json::from_str::<serde_json::Value>(&text).is_ok() {
            prop_assert!(matches!(result, Ok(()) | Err(EncodeError::IntegerOutOfRange)), "{:?}", result);
        }
        if result.is_ok() {
            serde_json::from_str::<serde::de::IgnoredAny>(&text).unwrap();
            decoded(&payload).unwrap();
        } else {
            prop_assert!(payload.is_empty());
        }
    }

    /// Arbitrary and mutated payloads (with a user or not) never panic; a
    /// delivered one is JSON `{"message": ...}` or `{"message": ..., "user":
    /// ...}`, and encoding its message (and user) again gives it back.
    #[test]
    fn decode_hostile_payloads(
        j in json(int()),
        u in prop::option::of(json(any::<i64>().prop_map(i128::from))),
        flips in vec((any::<Index>(), any::<u8>()), 0..4),
        cut in any::<Index>(),
        noise in vec(any::<u8>(), 0..64),
        pick in 0..3u8,
    ) {
        let mut payload = Vec::new();
        let mut text = String::new();
        render(&j, false, &mut text);
        match u {
            Some(u) => {
                let mut user = String::new();
                render(&u, false, &mut user);
                let _ = msgpack::encode_chat_event_with_user(&text, &user, &mut payload);
            }
            None => {
                let _ = msgpack::encode_chat_event(&text, &mut payload);
            }
        }
        match pick {
            0 => payload = noise,
            1 => {
                for (i, b) in &flips {
                    if !payload.is_empty() {
                        let at = i.index(payload.len());
                        payload[at] = *b;
                    }
                }
            }
            _ => payload.truncate(cut.index(payload.len() + 1)),
        }
        let mut out = b"kept".to_vec();
        match msgpack::decode_chat_event(&payload, &mut out) {
            Err(_) => prop_assert_eq!(out, b"kept"),
            Ok(()) => {
                let text = std::str::from_utf8(&out[4..]).unwrap();
                let (inner, user) = frame_parts(text);
                let again = encode_again(&inner, user.as_deref());
                let mut out2 = Vec::new();
                msgpack::decode_chat_event(&again, &mut out2).unwrap();
                prop_assert_eq!(&out2[..], &out[4..]);
            }
        }
    }
}

#[test]
fn event_depth_limits_agree() {
    for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1] {
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let mut payload = Vec::new();
        let encoded = msgpack::encode_chat_event(&text, &mut payload);
        if depth > MAX_DEPTH {
            assert_eq!(encoded, Err(EncodeError::TooDeep));
            continue;
        }
        let mut out = Vec::new();
        msgpack::decode_chat_event(&payload, &mut out).unwrap();
        let want = format!(
            "{{\"message\": {}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

// ---- RESP ----------------------------------------------------------------

/// A RESP value as the test writes it, with the wire form chosen.
#[derive(Clone, Debug)]
enum R {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    BlobError(Vec<u8>),
    Integer(i64, bool),
    Bulk(Vec<u8>),
    Verbatim([u8; 3], Vec<u8>),
    Null2Bulk,
    Null2Array,
    Null3,
    Boolean(bool),
    Double(f64),
    Big(String),
    Array(Vec<R>),
    Set(Vec<R>),
    Push(Vec<R>),
    Map(Vec<(R, R)>),
    /// An attribute map before the value it annotates.
    Attributed(Vec<(R, R)>, Box<R>),
}

impl R {
    fn write(&self, out: &mut Vec<u8>, zeros: usize) {
        let header = |out: &mut Vec<u8>, kind: u8, n: usize| {
            out.push(kind);
            out.resize(out.len() + zeros, b'0');
            out.extend(format!("{n}\r\n").as_bytes());
        };
        let blob = |out: &mut Vec<u8>, kind: u8, data: &[u8]| {
            header(out, kind, data.len());
            out.extend(data);
            out.extend(b"\r\n");
        };
        match self {
            R::Simple(s) => out.extend([b"+", &s[..], b"\r\n"].concat()),
            R::Error(s) => out.extend([b"-", &s[..], b"\r\n"].concat()),
            R::BlobError(s) => blob(out, b'!', s),
            R::Integer(i, plus) => {
                let sign = if *plus && *i >= 0 { "+" } else { "" };
                out.extend(format!(":{sign}{i}\r\n").as_bytes());
            }
            R::Bulk(b) => blob(out, b'$', b),
            R::Verbatim(format, text) => blob(out, b'=', &[&format[..], b":", text].concat()),
            R::Null2Bulk => out.extend(b"$-1\r\n"),
            R::Null2Array => out.extend(b"*-1\r\n"),
            R::Null3 => out.extend(b"_\r\n"),
            R::Boolean(b) => out.extend(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            R::Double(d) => out.extend(format!(",{}\r\n", double(*d)).as_bytes()),
            R::Big(digits) => out.extend(format!("({digits}\r\n").as_bytes()),
            R::Array(items) | R::Set(items) | R::Push(items) => {
                let kind = match self {
                    R::Array(_) => b'*',
                    R::Set(_) => b'~',
                    _ => b'>',
                };
                header(out, kind, items.len());
                for item in items {
                    item.write(out, zeros);
                }
            }
            R::Map(pairs) => write_pairs(out, b'%', pairs, zeros),
            R::Attributed(pairs, value) => {
                write_pairs(out, b'|', pairs, zeros);
                value.write(out, zeros);
            }
        }
    }

    fn expected(&self) -> Value<'_> {
        match self {
            R::Simple(s) => Value::Simple(s),
            R::Error(s) | R::BlobError(s) => Value::Error(s),
            R::Integer(i, _) => Value::Integer(*i),
            R::Bulk(b) | R::Verbatim(_, b) => Value::Bulk(b),
            R::Null2Bulk | R::Null2Array | R::Null3 => Value::Null,
            R::Boolean(b) => Value::Boolean(*b),
            R::Double(d) => Value::Double(*d),
            R::Big(digits) => Value::BigNumber(digits.as_bytes()),
            R::Array(items) | R::Set(items) => {
                Value::Array(items.iter().map(R::expected).collect())
            }
            R::Push(items) => Value::Push(items.iter().map(R::expected).collect()),
            R::Map(pairs) => Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.expected(), v.expected()))
                    .collect(),
            ),
            R::Attributed(_, value) => value.expected(),
        }
    }

    fn depth(&self) -> usize {
        match self {
            R::Array(items) | R::Set(items) | R::Push(items) => {
                1 + items.iter().map(R::depth).max().unwrap_or(0)
            }
            R::Map(pairs) => {
                1 + pairs
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0)
            }
            R::Attributed(pairs, value) => {
                let attribute = 1 + pairs
                    .iter()
                    .map(|(k, v)| k.depth().max(v.depth()))
                    .max()
                    .unwrap_or(0);
                attribute.max(value.depth())
            }
            _ => 0,
        }
    }
}

fn write_pairs(out: &mut Vec<u8>, kind: u8, pairs: &[(R, R)], zeros: usize) {
    out.push(kind);
    out.resize(out.len() + zeros, b'0');
    out.extend(format!("{}\r\n", pairs.len()).as_bytes());
    for (k, v) in pairs {
        k.write(out, zeros);
        v.write(out, zeros);
    }
}

fn double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // Redis writes "%.17g"; Rust's shortest forms read back just as exactly.
    if d.abs() >= 1e16 || (d != 0.0 && d.abs() < 1e-4) {
        format!("{d:e}")
    } else {
        format!("{d:?}")
    }
}

fn line_text() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("no CR or LF in a line", |b| *b != b'\r' && *b != b'\n'),
        0..20,
    )
}

fn resp_value() -> impl Strategy<Value = R> {
    let leaf = prop_oneof![
        line_text().prop_map(R::Simple),
        line_text().prop_map(R::Error),
        vec(any::<u8>(), 0..20).prop_map(R::BlobError),
        (any::<i64>(), any::<bool>()).prop_map(|(i, plus)| R::Integer(i, plus)),
        vec(any::<u8>(), 0..40).prop_map(R::Bulk),
        (
            prop::sample::select(vec![*b"txt", *b"mkd"]),
            vec(any::<u8>(), 0..20)
        )
            .prop_map(|(f, t)| R::Verbatim(f, t)),
        Just(R::Null2Bulk),
        Just(R::Null2Array),
        Just(R::Null3),
        any::<bool>().prop_map(R::Boolean),
        any::<f64>()
            .prop_filter("NaN != NaN", |d| !d.is_nan())
            .prop_map(R::Double),
        "-?[0-9]{1,40}".prop_map(R::Big),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(R::Array),
            vec(inner.clone(), 0..6).prop_map(R::Set),
            vec(inner.clone(), 0..6).prop_map(R::Push),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(R::Map),
            (vec((inner.clone(), inner.clone()), 0..3), inner)
                .prop_map(|(a, v)| R::Attributed(a, Box::new(v))),
        ]
    })
}

const ROOMY: Limits = Limits {
    max_bulk: 1 << 20,
    max_elements: 1 << 16,
    max_depth: 16,
};

/// What a reader sees of a stream: the values parsed (as `Debug` text, the
/// values borrowing from different buffers), then the error, if any.
fn read_stream(stream: &[u8], cuts: &[usize], limits: &Limits) -> (Vec<String>, Option<RespError>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut values = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        pending.extend_from_slice(&stream[start..end]);
        start = end;
        let mut pos = 0;
        loop {
            match resp::parse(&pending[pos..], limits) {
                Err(e) => return (values, Some(e)),
                Ok(None) => break,
                Ok(Some((value, consumed))) => {
                    assert!(consumed > 0 && consumed <= pending.len() - pos);
                    values.push(format!("{value:?}"));
                    pos += consumed;
                }
            }
        }
        pending.drain(..pos);
    }
    (values, None)
}

/// What the backplane's [`resp::Framer`] makes of a stream pushed in these
/// pieces: the values framed (as `Debug` text), the error if any, and the
/// bytes it holds of a value not yet whole.
fn frame_stream(
    stream: &[u8],
    cuts: &[usize],
    limits: &Limits,
) -> (Vec<String>, Option<RespError>, usize) {
    let mut framer = resp::Framer::new(*limits, usize::MAX);
    let mut values = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([stream.len()]) {
        framer.push(&stream[start..end]);
        start = end;
        loop {
            match framer.next_value() {
                Err(e) => return (values, Some(e), framer.buffered()),
                Ok(None) => break,
                Ok(Some(f)) => {
                    assert_eq!(f.skipped, 0, "nothing is over max_bulk here");
                    values.push(format!("{:?}", f.value));
                }
            }
        }
    }
    let held = framer.buffered();
    (values, None, held)
}

proptest! {
    #![proptest_config(config(256))]

    /// A value, written in any of its wire forms, parses whole to what it
    /// is; every proper prefix is incomplete.
    #[test]
    fn resp_value_round_trip(r in resp_value(), zeros in 0..3usize) {
        let mut bytes = Vec::new();
        r.write(&mut bytes, zeros);
        let parsed = resp::parse(&bytes, &ROOMY);
        prop_assert_eq!(parsed, Ok(Some((r.expected(), bytes.len()))));
        for cut in 0..bytes.len() {
            prop_assert_eq!(resp::parse(&bytes[..cut], &ROOMY), Ok(None), "cut at {}", cut);
        }
        // write_value writes what parses back the same.
        let mut again = Vec::new();
        resp::write_value(&mut again, &r.expected());
        prop_assert_eq!(resp::parse(&again, &ROOMY), Ok(Some((r.expected(), again.len()))));
    }

    /// A stream of values read in arbitrary pieces gives the same values.
    #[test]
    fn resp_stream_split_anywhere(rs in vec(resp_value(), 1..6), indices in vec(any::<Index>(), 0..12)) {
        let mut stream = Vec::new();
        for r in &rs {
            r.write(&mut stream, 0);
        }
        let want: Vec<String> = rs.iter().map(|r| format!("{:?}", r.expected())).collect();
        let whole = read_stream(&stream, &[], &ROOMY);
        prop_assert_eq!(&whole, &(want, None));
        let split = read_stream(&stream, &cuts(&indices, stream.len()), &ROOMY);
        prop_assert_eq!(split, whole);
    }

    /// Limits hold: a value over one of them is an error, never a value.
    #[test]
    fn resp_limits_hold(r in resp_value(), max_bulk in 0..48usize, max_elements in 0..8usize, max_depth in 0..5usize) {
        let limits = Limits { max_bulk, max_elements, max_depth };
        let mut bytes = Vec::new();
        r.write(&mut bytes, 0);
        if let Ok(Some((value, _))) = resp::parse(&bytes, &limits) {
            prop_assert!(r.depth() <= max_depth);
            prop_assert!(within(&value, &limits));
        }
    }

    /// Arbitrary and mutated bytes never panic; what parses consumed at most
    /// the input, and every shorter prefix of it is incomplete; a stream split
    /// anywhere reads the same as whole.
    #[test]
    fn resp_hostile_bytes(
        rs in vec(resp_value(), 1..4),
        flips in vec((any::<Index>(), any::<u8>()), 0..4),
        noise in vec(any::<u8>(), 0..64),
        use_noise in any::<bool>(),
        indices in vec(any::<Index>(), 0..8),
        max_bulk in prop_oneof![Just(1usize << 20), 0..32usize],
    ) {
        let mut bytes = Vec::new();
        if use_noise {
            bytes = noise;
        } else {
            for r in &rs {
                r.write(&mut bytes, 0);
            }
            for (i, b) in &flips {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
        }
        let limits = Limits { max_bulk, max_elements: 8, max_depth: 3 };
        if let Ok(Some((_, consumed))) = resp::parse(&bytes, &limits) {
            prop_assert!(consumed > 0 && consumed <= bytes.len());
            for cut in 0..consumed {
                prop_assert_eq!(resp::parse(&bytes[..cut], &limits), Ok(None));
            }
        }
        let whole = read_stream(&bytes, &[], &limits);
        let split = read_stream(&bytes, &cuts(&indices, bytes.len()), &limits);
        prop_assert_eq!(split, whole);
    }

    /// The incremental framer the link reads with agrees with `parse`: the
    /// same values from well-formed and hostile streams, cut anywhere; what
    /// `parse` refuses the framer refuses too, or is still waiting for the
    /// line that would show the fault.
    #[test]
    fn resp_framer_agrees_with_parse(
        rs in vec(resp_value(), 1..4),
        flips in vec((any::<Index>(), any::<u8>()), 0..4),
        noise in vec(any::<u8>(), 0..64),
        use_noise in any::<bool>(),
        indices in vec(any::<Index>(), 0..8),
        max_depth in 0..5usize,
    ) {
        let mut bytes = Vec::new();
        if use_noise {
            bytes = noise;
        } else {
            for r in &rs {
                r.write(&mut bytes, 0);
            }
            for (i, b) in &flips {
                let at = i.index(bytes.len());
                bytes[at] = *b;
            }
        }
        let limits = Limits { max_depth, ..ROOMY };
        let (want, parse_error) = read_stream(&bytes, &[], &limits);
        let (got, frame_error, held) = frame_stream(&bytes, &cuts(&indices, bytes.len()), &limits);
        prop_assert_eq!(got, want);
        prop_assert!(frame_error.is_none() || parse_error.is_some(), "{:?}", frame_error);
        prop_assert!(parse_error.is_none() || frame_error.is_some() || held > 0, "{:?}", parse_error);
    }

    /// Commands are arrays of bulk strings.
    #[test]
    fn resp_commands_parse_back(args in vec(vec(any::<u8>(), 0..40), 0..8)) {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        resp::write_command(&mut out, &refs);
        let want = Value::Array(refs.iter().map(|a| Value::Bulk(a)).collect());
        prop_assert_eq!(resp::parse(&out, &ROOMY), Ok(Some((want, out.len()))));
    }
}

/// Whether every string, line and aggregate in `value` is within `limits`.
fn within(value: &Value<'_>, limits: &Limits) -> bool {
    match value {
        Value::Simple(s) | Value::Error(s) | Value::Bulk(s) | Value::BigNumber(s) => {
            s.len() <= limits.max_bulk
        }
        Value::Array(items) | Value::Push(items) => {
            items.len() <= limits.max_elements && items.iter().all(|v| within(v, limits))
        }
        Value::Map(pairs) => {
            pairs.len() <= limits.max_elements
                && pairs
                    .iter()
                    .all(|(k, v)| within(k, limits) && within(v, limits))
        }
        _ => true,
    }
}
