//! The server under test, from the `ws://host:port/path/` URL given on the command line.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value, as written in the URL.
    pub host: String,
    /// Path prefix ending in `/`; each client appends `r<room>/`.
    pub base_path: String,
    /// `Origin` header; Django Channels' `AllowedHostsOriginValidator` rejects
    /// handshakes without one, so it defaults to `http://<host>`.
    pub origin: Option<String>,
}

impl Target {
    pub fn parse(url: &str, origin: Option<&str>) -> Result<Target, String> {
        let rest = if let Some(r) = url.strip_prefix("ws://") {
            r
        } else if url.starts_with("wss://") {
            return Err("wss:// is not supported: the harness speaks plain ws:// only".into());
        } else {
            return Err(format!("URL must start with ws:// (got {url:?})"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("URL has no host: {url:?}"));
        }
        let has_port = match authority.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => authority.contains(':'),
        };
        let with_port = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to no address"))?;
        let mut base_path = path.to_string();
        if !base_path.ends_with('/') {
            base_path.push('/');
        }
        let origin = match origin {
            Some("") => None,
            Some(o) => Some(o.to_string()),
            None => Some(format!("http://{authority}")),
        };
        Ok(Target {
            addr,
            host: authority.to_string(),
            base_path,
            origin,
        })
    }

    /// Request path for a room.
    pub fn path_for_room(&self, room: usize) -> String {
        format!("{}r{room}/", self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chat_urls() {
        let t = Target::parse("ws://127.0.0.1:8000/ws/chat/", None).unwrap();
        assert_eq!(t.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(t.path_for_room(7), "/ws/chat/r7/");
        assert_eq!(t.origin.as_deref(), Some("http://127.0.0.1:8000"));
        let t = Target::parse("ws://127.0.0.1:9000/ws/chat", Some("")).unwrap();
        assert_eq!(t.base_path, "/ws/chat/");
        assert_eq!(t.origin, None);
        assert_eq!(
            Target::parse("ws://127.0.0.1/x/", None)
                .unwrap()
                .addr
                .port(),
            80
        );
        assert!(Target::parse("http://127.0.0.1/", None).is_err());
        assert!(Target::parse("wss://127.0.0.1/", None).is_err());
    }
}
