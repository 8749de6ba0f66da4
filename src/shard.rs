//! channels_redis's names and shard choice, sans-IO. SKELETON.

/// The Redis channel of room `room`'s group: `<prefix>__group__chat_<room>`.
pub fn group_channel(prefix: &str, room: &str) -> String {
    let _ = (prefix, room);
    todo!()
}

/// channels_redis `_consistent_hash(name, shards)`: which of `shards` hosts owns `name`.
pub fn shard_for(name: &[u8], shards: usize) -> usize {
    let _ = (name, shards);
    todo!()
}
