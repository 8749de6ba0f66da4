//! The server under test, from the `ws://` or `wss://host:port/path/` URL given on the
//! command line, with everything a client needs to reach it: address, `Host`, path,
//! `Origin`, TLS, and the permessage-deflate offer.

use crate::connect_options::ConnectOptions;
use crate::deflate::DeflateOffer;
use crate::tls::{self, TlsTarget};
use crate::token::TokenMinter;
use std::net::{SocketAddr, ToSocketAddrs};

/// Most servers (nodes) one run can spread its clients over.
pub const MAX_NODES: usize = 1024;

/// The URL arguments as given: several positional URLs, each possibly a comma-separated
/// list, flattened into one list of node URLs (empty entries dropped).
pub fn split_urls(args: &[String]) -> Vec<String> {
    args.iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    pub addr: SocketAddr,
    /// `Host` header value, as written in the URL.
    pub host: String,
    /// Path prefix ending in `/`; each client appends `r<room>/`.
    pub base_path: String,
    /// `Origin` header; Django Channels' `AllowedHostsOriginValidator` rejects
    /// handshakes without one, so it defaults to `http://<host>`.
    pub origin: Option<String>,
    /// Whether to offer permessage-deflate, and to send compressed.
    pub deflate: DeflateOffer,
    /// `wss://`: the TLS configuration and server name (filled in by `parse_all`).
    pub tls: Option<TlsTarget>,
    /// The URL is `wss://`.
    pub secure: bool,
    /// Join tokens appended to each request path.
    pub token: Option<TokenMinter>,
}

impl Target {
    pub fn parse(url: &str, origin: Option<&str>) -> Result<Target, String> {
        let (rest, secure) = if let Some(r) = url.strip_prefix("ws://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (r, true)
        } else {
            return Err(format!("URL must start with ws:// or wss:// (got {url:?})"));
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
            format!("{authority}:{}", if secure { 443 } else { 80 })
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
            None if secure => Some(format!("https://{authority}")),
            None => Some(format!("http://{authority}")),
        };
        Ok(Target {
            url: url.to_string(),
            addr,
            host: authority.to_string(),
            base_path,
            origin,
            deflate: DeflateOffer::default(),
            tls: None,
            secure,
            token: None,
        })
    }

    /// Parses every node's URL (`urls` may repeat one: a node given twice is two "nodes"
    /// sharing rooms) with the connect options. Each target's `Origin` defaults to its
    /// own `http://<host:port>`.
    pub fn parse_all(urls: &[String], opts: &ConnectOptions) -> Result<Vec<Target>, String> {
        if urls.is_empty() {
            return Err("a URL is required, e.g. ws://127.0.0.1:8000/ws/chat/".into());
        }
        if urls.len() > MAX_NODES {
            return Err(format!(
                "{} URLs given: at most {MAX_NODES} nodes are supported",
                urls.len()
            ));
        }
        let mut targets = urls
            .iter()
            .map(|u| {
                let mut t = Target::parse(u, opts.origin.as_deref())?;
                t.deflate = opts.deflate;
                t.token = opts.token.clone();
                Ok(t)
            })
            .collect::<Result<Vec<Target>, String>>()?;
        if targets.iter().any(|t| t.secure) {
            // One configuration for the run: built (and the CA file read) once.
            let config = tls::client_config(&opts.tls)?;
            for t in targets.iter_mut().filter(|t| t.secure) {
                t.tls = Some(TlsTarget {
                    config: config.clone(),
                    server_name: tls::server_name(&t.host)?,
                });
            }
        }
        Ok(targets)
    }

    /// The chat path of a room (as reports show it).
    pub fn path_for_room(&self, room: usize) -> String {
        format!("{}r{room}/", self.base_path)
    }

    /// The upgrade request's path for a room: its chat path, with a token minted now for
    /// the room when the run has a token secret.
    pub fn request_path(&self, room: usize) -> String {
        let path = self.path_for_room(room);
        match &self.token {
            Some(t) => format!("{path}?token={}", t.query_value(&format!("r{room}"))),
            None => path,
        }
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
        let t = Target::parse("wss://localhost/ws/chat/", None).unwrap();
        assert_eq!((t.addr.port(), t.secure), (443, true));
        assert_eq!(t.origin.as_deref(), Some("https://localhost"));
        assert!(Target::parse("https://127.0.0.1/", None).is_err());
    }

    #[test]
    fn several_urls_make_several_nodes() {
        let urls = split_urls(&[
            "ws://127.0.0.1:8001/ws/chat/,ws://127.0.0.1:8002/ws/chat/".into(),
            "ws://127.0.0.1:8001/ws/chat/".into(),
        ]);
        assert_eq!(urls.len(), 3);
        let t = Target::parse_all(&urls, &ConnectOptions::default()).unwrap();
        assert_eq!(
            t.iter().map(|t| t.addr.port()).collect::<Vec<_>>(),
            vec![8001, 8002, 8001]
        );
        assert_eq!(t[1].origin.as_deref(), Some("http://127.0.0.1:8002"));
        let opts = ConnectOptions {
            token: Some(TokenMinter::new("k", "roomcast", crate::token::TokenFormat::Jwt).unwrap()),
            ..ConnectOptions::default()
        };
        let t = Target::parse_all(&urls, &opts).unwrap();
        assert!(t[0].request_path(7).starts_with("/ws/chat/r7/?token=eyJ"));
        assert_eq!(t[0].path_for_room(7), "/ws/chat/r7/");
        assert!(Target::parse_all(&[], &opts).is_err());
        assert!(
            Target::parse_all(&["ws://127.0.0.1:1/".into(), "http://x/".into()], &opts).is_err()
        );
    }
}
