"""Test vectors for tests/backplane.rs, computed with the Python side of the
interop: the msgpack (1.x) that channels_redis 4.3.0's RedisPubSubChannelLayer
publishes for `group_send(group, {"type": "chat_message", "message": value})`,
where `value = json.loads(text)["message"]` as in the seed's ChatConsumer, and
the frame that consumer's chat_message() sends: json.dumps({"message": value}).
With the sender's identity (SPEC section 9) the event is {"type": "chat_message",
"message": value, "user": identity} and the frame json.dumps({"message": value,
"user": identity}).

Run it with the Channels venv and paste its output into tests/backplane.rs
(the tables are checked in, so `cargo test` needs no Python):

    loadtest/baselines/channels/.venv/bin/python tests/interop/vectors.py
"""
import binascii
import json

import msgpack


def consistent_hash(value, ring_size):
    # channels_redis.utils._consistent_hash, verbatim in effect.
    if ring_size == 1:
        return 0
    bigval = binascii.crc32(value.encode("utf8")) & 0xFFF
    return int(bigval / (4096 / float(ring_size)))


# What a browser sends as the "message" value (the JSON text after `"message": `).
# Each row exercises a different msgpack encoding or json.dumps rule.
ENCODE = [
    '"hello"',
    '""',
    '"caf\u00e9 \U0001F600 na\u00efve"',  # raw UTF-8 in, \u escapes (surrogate pair) out
    r'"esc \"q\" back\\slash \/ tab\t nl\n \u0001 \u007f \u00e9 \ud83d\ude00"',
    '"' + "x" * 31 + '"',  # fixstr's longest
    '"' + "y" * 32 + '"',  # str8
    "0",
    "[0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 18446744073709551615]",
    "[-1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9223372036854775808]",
    "[1.0, -0.0, 3.5, 0.1, 1e20, 1E-7, 1.5e300, 100000.0, 1e16, 1e15, 2.5E+3]",
    "[null, true, false, [], {}]",
    '{"z": 1, "a": [true, null, {"k": "v"}], "m": {}, "\u00e9": "key escaped too"}',
    "[" + ", ".join(str(i) for i in range(16)) + "]",  # array16
    "{" + ", ".join(f'"k{i:02}": {i}' for i in range(16)) + "}",  # map16
    "  [ 1 ,\t2 ]  ",  # whitespace in the input is not kept
]

# Raw payloads as another publisher could legitimately write them (not what
# roomcast itself writes): Python consumers accept them, so roomcast must too.
DECODE = [
    ("float32 1.5", msgpack.packb({"type": "chat_message", "message": 1.5}, use_single_float=True)),
    ("float32 0.1", msgpack.packb({"type": "chat_message", "message": 0.1}, use_single_float=True)),
    ("message key first", msgpack.packb({"message": "first", "type": "chat_message"})),
    ("extra keys ignored", msgpack.packb({"type": "chat_message", "message": "x", "id": 7})),
    ("a user", msgpack.packb({"type": "chat_message", "message": "x", "user": 7})),
    ("user key first, escaped", msgpack.packb({"user": "zo\u00eb", "type": "chat_message", "message": "\u00e9"})),
    ("a null user, extra keys", msgpack.packb({"type": "chat_message", "id": 1, "message": [1], "user": None})),
    ("a structured user", msgpack.packb({"type": "chat_message", "message": 0, "user": {"id": 42, "name": "alice"}})),
    (
        "non-minimal ints and str8",
        bytes.fromhex("82") + bytes.fromhex("d9 04") + b"type" + bytes.fromhex("d9 0c") + b"chat_message"
        + bytes.fromhex("a7") + b"message" + bytes.fromhex("93 cc 05 cd 0006 d0 f9"),
    ),
    ("nested non-ASCII", msgpack.packb({"type": "chat_message", "message": {"\u00e9": ["\U0001F600", None]}})),
    ("big uint64", msgpack.packb({"type": "chat_message", "message": 2**64 - 1})),
]

# (message JSON text, identity JSON text): a member with an identity publishes
# {"type": "chat_message", "message": ..., "user": ...}, as packb writes that dict.
USER_ENCODE = [
    ('"hi"', '"alice"'),
    ("42", "42"),
    ('{"a": [1.5, null]}', '"zo\\u00eb"'),
    ('"caf\u00e9"', "true"),
    ('"x"', "-9223372036854775808"),
    ("[]", "1e16"),
]

# Payloads a Channels ChatConsumer could not turn into a frame; roomcast drops
# them and counts roomcast_backplane_dropped_total{reason=...}.
DROP = [
    ("malformed", "garbage", b"\xc1not msgpack"),
    ("malformed", "truncated", msgpack.packb({"type": "chat_message", "message": "cut"})[:-2]),
    ("malformed", "trailing bytes", msgpack.packb({"type": "chat_message", "message": "x"}) + b"\x00"),
    ("not_an_event", "an array", msgpack.packb(["chat_message", "x"])),
    ("not_an_event", "a map without type", msgpack.packb({"message": "x"})),
    ("not_an_event", "type not a string", msgpack.packb({"type": 5, "message": "x"})),
    ("other_type", "another type", msgpack.packb({"type": "user_joined", "message": "x"})),
    ("no_message", "chat_message without message", msgpack.packb({"type": "chat_message"})),
    ("unsupported", "bin value", msgpack.packb({"type": "chat_message", "message": b"\x00\x01"})),
    ("unsupported", "ext value", msgpack.packb({"type": "chat_message", "message": msgpack.ExtType(5, b"ab")})),
]


def frame_of(event):
    """What the ChatConsumer sends for an event: the message, and the user if any."""
    frame = {"message": event["message"]}
    if "user" in event:
        frame["user"] = event["user"]
    return json.dumps(frame)


def rust_hex(b):
    return '"' + b.hex() + '"'


def rust_str(s):
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def main():
    prefix = msgpack.packb({"type": "chat_message", "message": None})[:-1]
    print(f"const EVENT_PREFIX: &str = {rust_hex(prefix)};")
    print()
    print("/// (message JSON sent, msgpack of the value, hex, frame every member gets)")
    print("const ENCODE: &[(&str, &str, &str)] = &[")
    for text in ENCODE:
        value = json.loads('{"message": ' + text + "}")["message"]
        packed = msgpack.packb({"type": "chat_message", "message": value})
        assert packed.startswith(prefix)
        frame = json.dumps({"message": value})
        print(f"    ({rust_str(text)}, {rust_hex(packed[len(prefix):])}, {rust_str(frame)}),")
    print("];")
    print()
    print("/// (what, payload PUBLISHed (hex), frame every member gets)")
    print("const DECODE: &[(&str, &str, &str)] = &[")
    for what, payload in DECODE:
        event = msgpack.unpackb(payload)
        print(f"    ({rust_str(what)}, {rust_hex(payload)}, {rust_str(frame_of(event))}),")
    print("];")
    print()
    print("/// (message JSON, identity JSON, msgpack PUBLISHed (hex), frame every member gets)")
    print("const USER_ENCODE: &[(&str, &str, &str, &str)] = &[")
    for text, user in USER_ENCODE:
        event = {"type": "chat_message", "message": json.loads(text), "user": json.loads(user)}
        packed = msgpack.packb(event)
        print(f"    ({rust_str(text)}, {rust_str(user)}, {rust_hex(packed)}, {rust_str(frame_of(event))}),")
    print("];")
    print()
    print("/// (reason label, what, payload PUBLISHed (hex))")
    print("const DROP: &[(&str, &str, &str)] = &[")
    for reason, what, payload in DROP:
        print(f"    ({rust_str(reason)}, {rust_str(what)}, {rust_hex(payload)}),")
    print("];")
    print()
    for ring in (2,):
        for room in ("lobby", "a", "b", "x"):
            name = f"asgi__group__chat_{room}"
            print(f"// {name}: shard {consistent_hash(name, ring)} of {ring}")


if __name__ == "__main__":
    main()
