//! The web console: plain HTML, CSS and ES modules compiled into the binary and served under
//! `/ui/` on the control socket, with the headers that keep a browser from running anything
//! but these files (a strict Content-Security-Policy, no framing, no sniffing, HSTS,
//! cross-origin isolation).
//!
//! The console is a client of the `/v1` API like any other: its calls pass the same identity,
//! role and cross-site checks (`browser`), so it holds no privilege of its own. This module owns
//! the asset table and the console's headers only; it never reads a body, never authorizes and
//! never answers a path outside `/ui`.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

/// One file of the console.
#[derive(Debug)]
pub struct Asset {
    /// The path it is served under.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $file)),
        }
    };
}

/// Every file the console serves; nothing else under `/ui/` exists.
pub const ASSETS: &[Asset] = &[
    asset!("/ui/", "index.html", HTML),
    asset!("/ui/console.css", "console.css", CSS),
    asset!("/ui/app.js", "app.js", JS),
    asset!("/ui/api.js", "api.js", JS),
    asset!("/ui/dom.js", "dom.js", JS),
    asset!("/ui/time.js", "time.js", JS),
    asset!("/ui/credentials.js", "credentials.js", JS),
    asset!("/ui/keys.js", "keys.js", JS),
    asset!("/ui/jobs.js", "jobs.js", JS),
    asset!("/ui/logs.js", "logs.js", JS),
    asset!("/ui/admin.js", "admin.js", JS),
    asset!("/ui/favicon.svg", "favicon.svg", SVG),
];

/// The console's Content-Security-Policy: only the daemon's own files and API, no inline
/// script or style, no plugins, no framing, forms post only here, and DOM sinks take no
/// strings (the console builds its pages with DOM nodes and text only).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'; require-trusted-types-for 'script'; \
     trusted-types 'none'";

/// Whether a path belongs to the console.
pub fn is_console(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// What the console answers for a request to one of its paths.
#[derive(Debug)]
pub enum Answer {
    File(&'static Asset),
    /// `/ui` without the slash: the page's relative module paths need `/ui/`.
    Redirect(&'static str),
    Refused(StatusCode, &'static str, String),
}

/// Looks a console path up. Only `GET` is served; the console has no state to change.
pub fn answer(method: &Method, path: &str) -> Answer {
    if *method != Method::GET {
        return Answer::Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{path} allows only GET: the console is static files"),
        );
    }
    if path == "/ui" {
        return Answer::Redirect("/ui/");
    }
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => Answer::File(a),
        None => Answer::Refused(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the console has no file {path}; open /ui/"),
        ),
    }
}

/// The headers of every console answer (errors included), on top of the API's own
/// ([`super::browser::secure_headers`]).
pub fn console_headers(h: &mut HeaderMap) {
    let pairs: [(header::HeaderName, &'static str); 8] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-embedder-policy"),
            "require-corp",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in pairs {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), usb=(), serial=()"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_and_nothing_else() {
        for a in ASSETS {
            assert!(matches!(answer(&Method::GET, a.path), Answer::File(f) if f.path == a.path));
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
        assert!(matches!(
            answer(&Method::GET, "/ui/../v1/health"),
            Answer::Refused(StatusCode::NOT_FOUND, ..)
        ));
        assert!(matches!(
            answer(&Method::POST, "/ui/"),
            Answer::Refused(StatusCode::METHOD_NOT_ALLOWED, ..)
        ));
        assert!(matches!(
            answer(&Method::GET, "/ui"),
            Answer::Redirect("/ui/")
        ));
        assert!(is_console("/ui") && is_console("/ui/x") && !is_console("/uix"));
    }

    /// Whether HTML text has an attribute like ` onclick=`.
    fn has_event_attribute(text: &str) -> bool {
        text.match_indices(" on").any(|(i, _)| {
            let rest = &text[i + 3..];
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        })
    }

    #[test]
    fn no_asset_has_inline_script_or_style() {
        for a in ASSETS.iter().filter(|a| a.content_type == HTML) {
            let text = std::str::from_utf8(a.body).unwrap();
            assert!(!text.contains("<style"), "{}", a.path);
            assert!(!text.contains(" style="), "{}", a.path);
            assert!(
                !has_event_attribute(text),
                "{}: an inline event handler",
                a.path
            );
            for script in text.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap();
                assert!(tag.contains("src="), "{}: an inline script", a.path);
            }
        }
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(a.body).unwrap();
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "document.write",
            ] {
                assert!(!text.contains(sink), "{} uses {sink}", a.path);
            }
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{} names another site",
                a.path
            );
            assert!(
                !text.contains("localStorage")
                    && !text.contains("sessionStorage")
                    && !text.contains("document.cookie"),
                "{} keeps state in the browser",
                a.path
            );
        }
    }
}
