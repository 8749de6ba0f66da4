//! `redis://` and `rediss://` URLs for --redis, sans-IO.
//!
//! Accepts `redis[s]://[[username][:password]@]host[:port][/db]`, the subset
//! of redis-py's `from_url` that a TCP connection, or TLS over one, needs:
//!
//! - the scheme is matched without regard to case; `rediss://` is Redis over
//!   TLS (the host is also the name the server's certificate must carry);
//!   `unix://` is refused with a message that says so;
//! - the user info is split at the last `@` (so an unescaped `@` in a
//!   password still works) and at its first `:`; both parts are
//!   percent-decoded and must be UTF-8; an empty username or password counts
//!   as absent, as in redis-py;
//! - the host is a name (letters, digits, `-`, `.`, `_`), an IPv4 address or
//!   a bracketed IPv6 literal (stored without the brackets);
//! - the port defaults to 6379 and must be 1 to 65535; the db (the path)
//!   defaults to 0;
//! - query strings and fragments are refused rather than silently ignored.
//!
//! [`Display`](fmt::Display) never shows the password, so a parsed URL can be
//! logged; what it prints parses back to the same URL minus the password.

use std::fmt;
use std::net::Ipv6Addr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// `rediss://`: TLS, the certificate checked against `host`.
    pub tls: bool,
}

/// Redis's well-known port.
pub const DEFAULT_PORT: u16 = 6379;

impl RedisUrl {
    pub fn parse(s: &str) -> Result<RedisUrl, String> {
        let (rest, tls) = strip_scheme(s)?;
        if rest.contains(['?', '#']) {
            // Not echoed: redis-py takes ?password=... there.
            return Err(
                "the Redis URL has a query or fragment, which is not supported; \
                 give the db as a path, e.g. redis://host:6379/0"
                    .to_string(),
            );
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(info) => parse_userinfo(info)?,
            None => (None, None),
        };
        let (host, port) = parse_hostport(hostport)?;
        Ok(RedisUrl {
            host,
            port,
            username,
            password,
            db: parse_db(path)?,
            tls,
        })
    }
}

/// The rest of the URL, and whether it is `rediss://`.
fn strip_scheme(s: &str) -> Result<(&str, bool), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        // Not echoed: the text may hold a password.
        return Err("expected a redis://host[:port][/db] URL (no scheme)".to_string());
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis" => Ok((rest, false)),
        "rediss" => Ok((rest, true)),
        "unix" => Err(
            "unix:// sockets are not supported; only redis:// and rediss:// (TLS) URLs are supported"
                .to_string(),
        ),
        _ => Err(format!(
            "unsupported scheme {scheme:?}; only redis:// and rediss:// (TLS) URLs are supported"
        )),
    }
}

type Credentials = (Option<String>, Option<String>);

fn parse_userinfo(info: &str) -> Result<Credentials, String> {
    let (user, pass) = match info.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (info, None),
    };
    let user = percent_decode(user, "username")?;
    let pass = pass.map(|p| percent_decode(p, "password")).transpose()?;
    Ok((
        Some(user).filter(|u| !u.is_empty()),
        pass.filter(|p| !p.is_empty()),
    ))
}

fn percent_decode(s: &str, what: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            let h = std::str::from_utf8(h).ok()?;
            u8::from_str_radix(h, 16)
                .ok()
                .filter(|_| h.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        match hex {
            Some(b) => out.push(b),
            None => {
                return Err(format!(
                "the Redis URL's {what} has a bad percent escape (expected % and two hex digits)"
            ))
            }
        }
        i += 3;
    }
    String::from_utf8(out)
        .map_err(|_| format!("the Redis URL's {what} is not UTF-8 once percent-decoded"))
}

fn parse_hostport(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((literal, after)) = inner.split_once(']') else {
            return Err("the Redis URL's IPv6 host has no closing ']'".to_string());
        };
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "the Redis URL's host [{literal}] is not an IPv6 address"
            ));
        }
        let port =
            match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("unexpected {after:?} after the Redis URL's IPv6 host")
                })?),
            };
        (literal, port)
    } else if hostport.matches(':').count() > 1 {
        return Err(format!(
            "the Redis URL's host {hostport:?} looks like an IPv6 address; \
             put it in brackets: redis://[::1]:6379"
        ));
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the Redis URL has no host (expected redis://host[:port][/db])".to_string());
    }
    if !hostport.starts_with('[') && !host.bytes().all(is_host_byte) {
        return Err(format!(
            "the Redis URL's host {host:?} is not a host name or IP address \
             (IPv6 addresses go in brackets: redis://[::1]:6379)"
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => parse_port(p)?,
    };
    Ok((host.to_string(), port))
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

fn parse_port(p: &str) -> Result<u16, String> {
    let bad = || format!("the Redis URL's port {p:?} is not a number from 1 to 65535");
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

fn parse_db(path: &str) -> Result<u32, String> {
    let db = path.strip_prefix('/').unwrap_or(path);
    if db.is_empty() {
        return Ok(0);
    }
    if !db.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the Redis URL's path {path:?} is not a database number (expected /0, /1, ...)"
        ));
    }
    db.parse::<u32>()
        .map_err(|_| format!("the Redis URL's database number {db} is too large"))
}

/// `redis[s]://[user@]host:port/db`, never the password.
impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "rediss://" } else { "redis://" })?;
        if let Some(user) = &self.username {
            write_escaped(f, user)?;
            f.write_str("@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

/// Percent-encodes what would otherwise end or split the user info.
fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, user: Option<&str>, pass: Option<&str>, db: u32) -> RedisUrl {
        RedisUrl {
            host: host.to_string(),
            port,
            username: user.map(str::to_string),
            password: pass.map(str::to_string),
            db,
            tls: false,
        }
    }

    #[test]
    fn parses_the_accepted_forms() {
        let cases = [
            ("redis://localhost", url("localhost", 6379, None, None, 0)),
            ("redis://localhost/", url("localhost", 6379, None, None, 0)),
            ("REDIS://Host:7000/3", url("Host", 7000, None, None, 3)),
            (
                "redis://10.0.0.5:6380",
                url("10.0.0.5", 6380, None, None, 0),
            ),
            ("redis://[::1]", url("::1", 6379, None, None, 0)),
            ("redis://[::1]:6390/2", url("::1", 6390, None, None, 2)),
            (
                "redis://[2001:db8::7]:1/0",
                url("2001:db8::7", 1, None, None, 0),
            ),
            ("redis://u@h", url("h", 6379, Some("u"), None, 0)),
            ("redis://:secret@h", url("h", 6379, None, Some("secret"), 0)),
            ("redis://u:p@h:1/15", url("h", 1, Some("u"), Some("p"), 15)),
            ("redis://u:@h", url("h", 6379, Some("u"), None, 0)),
            ("redis://@h", url("h", 6379, None, None, 0)),
            // Percent escapes, and an unescaped '@' or ':' in the password.
            (
                "redis://us%40er:p%3Aw%2Fd%25@h",
                url("h", 6379, Some("us@er"), Some("p:w/d%"), 0),
            ),
            (
                "redis://u:p@ss:w@h",
                url("h", 6379, Some("u"), Some("p@ss:w"), 0),
            ),
            (
                "redis://u:%C3%A9@h",
                url("h", 6379, Some("u"), Some("é"), 0),
            ),
            (
                "redis://h:65535/4294967295",
                url("h", 65535, None, None, u32::MAX),
            ),
            (
                "redis://my_host.example-1.com",
                url("my_host.example-1.com", 6379, None, None, 0),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(RedisUrl::parse(s), Ok(want), "{s}");
        }
        // rediss:// is the same URL over TLS.
        for (s, want) in [
            ("rediss://h", url("h", 6379, None, None, 0)),
            (
                "REDISS://u:p@10.0.0.5:6380/2",
                url("10.0.0.5", 6380, Some("u"), Some("p"), 2),
            ),
            ("rediss://[::1]:7000", url("::1", 7000, None, None, 0)),
        ] {
            assert_eq!(
                RedisUrl::parse(s),
                Ok(RedisUrl { tls: true, ..want }),
                "{s}"
            );
        }
    }

    fn err(s: &str) -> String {
        RedisUrl::parse(s).expect_err(s)
    }

    #[test]
    fn refuses_unix_and_junk_with_reasons() {
        assert!(err("unix:///tmp/redis.sock").contains("only redis:// and rediss://"));
        assert!(err("http://h").contains("unsupported scheme"));
        assert!(err("localhost:6379").contains("no scheme"));
        assert!(err("").contains("no scheme"));
        assert!(err("redis://").contains("no host"));
        assert!(err("redis://:6379").contains("no host"));
        assert!(err("redis://u:p@").contains("no host"));
        assert!(err("redis://h:").contains("port"));
        assert!(err("redis://h:0").contains("port"));
        assert!(err("redis://h:65536").contains("port"));
        assert!(err("redis://h:+1").contains("port"));
        assert!(err("redis://h:12ab").contains("port"));
        assert!(err("redis://::1").contains("brackets"));
        assert!(err("redis://2001:db8::1:6379").contains("brackets"));
        assert!(err("redis://[::1").contains("']'"));
        assert!(err("redis://[nope]").contains("IPv6"));
        assert!(err("redis://[::1]x").contains("after"));
        assert!(err("redis://h/x").contains("database"));
        assert!(err("redis://h/1/2").contains("database"));
        assert!(err("redis://h/-1").contains("database"));
        assert!(err("redis://h/4294967296").contains("too large"));
        assert!(err("redis://h/0?db=1").contains("query"));
        assert!(err("redis://h#x").contains("query"));
        assert!(err("redis://h o").contains("host"));
        assert!(err("redis://u%4@h").contains("percent"));
        // Errors never repeat the password.
        for bad in [
            "redis//u:hunter2@h",
            "redis://u:hunter2@h?x",
            "redis://u:hunter2@h:x",
        ] {
            assert!(!err(bad).contains("hunter2"), "{bad}");
        }
        assert!(err("redis://u%zz@h").contains("percent"));
        assert!(err("redis://u%+1@h").contains("percent"));
        assert!(err("redis://u:%ff@h").contains("UTF-8"));
        assert!(err("redis://é").contains("host"));
    }

    #[test]
    fn display_hides_the_password_and_parses_back() {
        let cases = [
            ("redis://localhost", "redis://localhost:6379/0"),
            ("redis://u:secret@h:7/3", "redis://u@h:7/3"),
            ("redis://:secret@h", "redis://h:6379/0"),
            ("redis://[::1]:6390/2", "redis://[::1]:6390/2"),
            ("redis://a%40b:c@h", "redis://a%40b@h:6379/0"),
            ("redis://%C3%A9:%3A@h", "redis://%C3%A9@h:6379/0"),
            ("rediss://u:secret@h", "rediss://u@h:6379/0"),
        ];
        for (s, shown) in cases {
            let parsed = RedisUrl::parse(s).unwrap();
            assert_eq!(parsed.to_string(), shown);
            assert!(!shown.contains("secret"));
            let again = RedisUrl::parse(shown).unwrap();
            assert_eq!(
                again,
                RedisUrl {
                    password: None,
                    ..parsed
                }
            );
        }
    }
}
