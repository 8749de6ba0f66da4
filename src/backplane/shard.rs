//! channels_redis's names and shard choice, sans-IO.
//!
//! Both must agree bit for bit with channels_redis 4.3.0, or a group's
//! messages go to a Redis host the Python consumers never subscribe to:
//!
//! - [`group_channel`] is `RedisPubSubLoopLayer._get_group_channel_name` for
//!   the `ChatConsumer`'s group `chat_<room>`;
//! - [`shard_for`] is `utils._consistent_hash`: CRC-32 (IEEE, as
//!   `binascii.crc32`), its low 12 bits, scaled down to the shard count with
//!   the same `f64` arithmetic Python does (so the rounding is the same too).
//!
//! The result is always below `shards` (0 when `shards` is 0 or 1, where
//! Python divides by zero or short-cuts).

/// The Redis channel of room `room`'s group: `<prefix>__group__chat_<room>`.
pub fn group_channel(prefix: &str, room: &str) -> String {
    format!("{prefix}__group__chat_{room}")
}

/// channels_redis `_consistent_hash(name, shards)`: which of `shards` hosts owns `name`.
pub fn shard_for(name: &[u8], shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    scale(crc32(name) & 0xFFF, shards)
}

/// Python's `int(bigval / (4096 / float(shards)))`, for `shards >= 2`.
fn scale(bigval: u32, shards: usize) -> usize {
    let ring_divisor = 4096.0 / shards as f64;
    // `int()` truncates toward zero, as `as` does for a non-negative float.
    let shard = (f64::from(bigval) / ring_divisor) as usize;
    // Unreachable for any shard count that fits in memory; keeps callers'
    // indexing safe anyway.
    shard.min(shards - 1)
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and `binascii.crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_channel_matches_channels_redis() {
        assert_eq!(group_channel("asgi", "lobby"), "asgi__group__chat_lobby");
        assert_eq!(group_channel("myapp", ""), "myapp__group__chat_");
    }

    #[test]
    fn crc32_matches_binascii() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b"a"), 0xe8b7_be43);
        assert_eq!(crc32(b"asgi__group__chat_lobby"), 0xdcd5_1131);
    }

    /// Room, `binascii.crc32` of its group channel under prefix "asgi", and
    /// `_consistent_hash(name, n)` for n = 2..=7, all from Python.
    const PYTHON: &[(&str, u32, &str)] = &[
        ("lobby", 0xdcd51131, "000000"),
        ("room1", 0xf4427eec, "123456"),
        ("général", 0xc4f1ccbf, "123345"),
        ("test-room", 0x0bab4beb, "122345"),
        ("a", 0x68183f90, "123456"),
        ("b", 0xf1116e2a, "123456"),
        ("c", 0x86165ebc, "123456"),
        ("d", 0x1872cb1f, "122344"),
        ("e", 0x6f75fb89, "122345"),
        ("f", 0xf67caa33, "112334"),
        ("g", 0x817b9aa5, "112334"),
        ("h", 0x11c48734, "011223"),
        ("0", 0x74745ef2, "123456"),
        ("1", 0x03736e64, "123456"),
        ("2", 0x9a7a3fde, "123456"),
        ("3", 0xed7d0f48, "123456"),
        ("4", 0x73199aeb, "122344"),
        ("5", 0x041eaa7d, "112334"),
        ("6", 0x9d17fbc7, "122345"),
        ("7", 0xea10cb51, "122344"),
        ("8", 0x7aafd6c0, "011222"),
        ("9", 0x0da8e656, "011122"),
        ("chat", 0x8ea36e30, "123456"),
        ("日本語", 0x5754d1f5, "000000"),
        ("emoji😀", 0x20f6896b, "112234"),
        ("Room_42", 0xfaa67ba7, "122345"),
        ("-", 0x1772322b, "000000"),
        ("_", 0xa979223b, "000000"),
        ("zz", 0x3b83374e, "011223"),
    ];

    #[test]
    fn shard_for_matches_consistent_hash() {
        for &(room, crc, shards) in PYTHON {
            let name = group_channel("asgi", room);
            assert_eq!(crc32(name.as_bytes()), crc, "{name}");
            assert_eq!(shard_for(name.as_bytes(), 1), 0);
            for (n, want) in (2..).zip(shards.bytes()) {
                assert_eq!(
                    shard_for(name.as_bytes(), n),
                    usize::from(want - b'0'),
                    "{name} {n}"
                );
            }
        }
        let long = group_channel("asgi", &"x".repeat(100));
        assert_eq!(crc32(long.as_bytes()), 0x9169d453);
        let got: Vec<usize> = (2..8).map(|n| shard_for(long.as_bytes(), n)).collect();
        assert_eq!(got, [0, 0, 1, 1, 1, 1]);
    }

    /// The first 12-bit value of each shard, from Python: where the float
    /// division's rounding decides, e.g. 1365 -> 0 and 1366 -> 1 for n = 3.
    #[test]
    fn shard_boundaries_match_python() {
        let python: &[(usize, &[u32])] = &[
            (3, &[0, 1366, 2731]),
            (5, &[0, 820, 1639, 2458, 3277]),
            (6, &[0, 683, 1366, 2048, 2731, 3414]),
            (7, &[0, 586, 1171, 1756, 2341, 2926, 3511]),
            (9, &[0, 456, 911, 1366, 1821, 2276, 2731, 3186, 3641]),
            (10, &[0, 410, 820, 1229, 1639, 2048, 2458, 2868, 3277, 3687]),
            (
                11,
                &[0, 373, 745, 1118, 1490, 1862, 2235, 2607, 2979, 3352, 3724],
            ),
            (
                13,
                &[
                    0, 316, 631, 946, 1261, 1576, 1891, 2206, 2521, 2836, 3151, 3466, 3781,
                ],
            ),
        ];
        for &(n, firsts) in python {
            for (shard, &first) in firsts.iter().enumerate() {
                assert_eq!(scale(first, n), shard, "n={n}");
                if first > 0 {
                    assert_eq!(scale(first - 1, n), shard - 1, "n={n}");
                }
            }
            assert_eq!(scale(4095, n), n - 1);
        }
    }

    #[test]
    fn degenerate_shard_counts() {
        assert_eq!(shard_for(b"anything", 0), 0);
        assert_eq!(shard_for(b"anything", 1), 0);
        for n in 2..100 {
            assert!(shard_for(b"a", n) < n);
        }
    }
}
