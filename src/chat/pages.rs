//! The embedded chat page and its assets, compiled into the binary so the
//! relay is one file to deploy. The page speaks only the seed's protocol, so
//! it works against the seed's Django Channels app as well.

use crate::wire::http::Page;

/// A static response body with its headers.
pub struct Asset {
    pub content_type: &'static str,
    /// Extra header lines. The file names carry no version, so browsers
    /// revalidate rather than keep a stale page after an upgrade.
    pub cache_control: &'static str,
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const NO_CACHE: &str = "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n";

/// The asset for a page route, if there is one.
pub fn lookup(page: &Page) -> Option<Asset> {
    let (content_type, body): (&str, &[u8]) = match page {
        Page::Index => (HTML, include_bytes!("page/index.html")),
        Page::Room(_) => (HTML, include_bytes!("page/room.html")),
        Page::Static(name) => match name.as_str() {
            "app.css" => ("text/css; charset=utf-8", include_bytes!("page/app.css")),
            "room.js" => (
                "text/javascript; charset=utf-8",
                include_bytes!("page/room.js"),
            ),
            _ => return None,
        },
        Page::Healthz | Page::Metrics => return None,
    };
    Some(Asset {
        content_type,
        cache_control: NO_CACHE,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_route_has_its_asset() {
        for page in [
            Page::Index,
            Page::Room("lobby".into()),
            Page::Static("app.css".into()),
            Page::Static("room.js".into()),
        ] {
            let asset = lookup(&page).expect("asset");
            assert!(!asset.body.is_empty());
        }
        assert!(lookup(&Page::Static("../Cargo.toml".into())).is_none());
    }
}
