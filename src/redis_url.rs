//! `redis://` URLs for --redis, sans-IO. SKELETON.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl RedisUrl {
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let _ = s;
        todo!()
    }
}

/// `redis://[user@]host:port/db`, never the password.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!()
    }
}
