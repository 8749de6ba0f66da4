//! `--max-connections-per-ip` (SPEC section 9): open connections counted
//! per client address, sans-IO. The loop calls [`PerIpLimit::try_open`] when
//! it accepts a connection (false: answer `429` and close) and
//! [`PerIpLimit::close`] exactly once when a counted connection goes.
//!
//! Invariants:
//! - An address is counted as an IPv4 address (IPv4-mapped IPv6 addresses,
//!   `::ffff:a.b.c.d`, count as the IPv4 address) or, for IPv6, by its /64
//!   prefix: one IPv6 client usually holds a whole /64, so counting single
//!   IPv6 addresses would let it open as many connections as it likes.
//! - The map holds only addresses with open connections: memory is bounded
//!   by the connection count, and the count of an address never exceeds the
//!   limit.

use std::collections::HashMap;
use std::net::IpAddr;

/// Connections per client address.
#[derive(Debug)]
pub struct PerIpLimit {
    limit: u32,
    open: HashMap<Client, u32>,
}

/// A client address as counted: an IPv4 address or an IPv6 /64 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Prefix(u64),
}

impl PerIpLimit {
    /// At most `limit` (at least 1) open connections per client address.
    pub fn new(limit: u32) -> PerIpLimit {
        PerIpLimit {
            limit: limit.max(1),
            open: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`; false (and nothing counted) when
    /// the address already has `limit` open.
    pub fn try_open(&mut self, ip: IpAddr) -> bool {
        let n = self.open.entry(Client::of(ip)).or_insert(0);
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
    }

    /// Forgets one counted connection from `ip`.
    pub fn close(&mut self, ip: IpAddr) {
        let client = Client::of(ip);
        if let Some(n) = self.open.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&client);
            }
        } else {
            debug_assert!(false, "closing a connection that was not counted");
        }
    }

    /// Open connections from `ip`'s address (or /64).
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.open.get(&Client::of(ip)).copied().unwrap_or(0)
    }

    /// Addresses with open connections.
    pub fn clients(&self) -> usize {
        self.open.len()
    }
}

impl Client {
    fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.into()),
                None => Client::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_per_address_and_releases() {
        let mut l = PerIpLimit::new(2);
        assert!(l.try_open(ip("10.0.0.1")));
        assert!(l.try_open(ip("10.0.0.1")));
        assert!(!l.try_open(ip("10.0.0.1")));
        assert!(l.try_open(ip("10.0.0.2")));
        assert_eq!(l.open_from(ip("10.0.0.1")), 2);
        l.close(ip("10.0.0.1"));
        assert!(l.try_open(ip("10.0.0.1")));
        l.close(ip("10.0.0.1"));
        l.close(ip("10.0.0.1"));
        l.close(ip("10.0.0.2"));
        assert_eq!(l.clients(), 0);
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let mut l = PerIpLimit::new(1);
        assert!(l.try_open(ip("2001:db8:1:2::1")));
        assert!(!l.try_open(ip("2001:db8:1:2:ffff::9")));
        assert!(l.try_open(ip("2001:db8:1:3::1")));
        assert!(l.try_open(ip("192.0.2.7")));
        assert!(!l.try_open(ip("::ffff:192.0.2.7")));
        assert_eq!(l.clients(), 3);
    }
}
