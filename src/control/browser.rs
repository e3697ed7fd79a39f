//! The defence against cross-site requests (CSRF) and against browsers caching or sniffing
//! answers: a browser that holds an admin's client certificate must not let a web page elsewhere
//! act through it.
//!
//! Policy (OWASP's for APIs reached from browsers), applied to every request, reads included,
//! and to every copy of a repeated header (a request is never judged by its first copy only):
//! - a request whose `Origin` is present and is not exactly one of the daemon's own origins
//!   (`https://<name>:<port>` for each DNS name and IP address of the server certificate, on the
//!   port the control socket listens on) is refused 403 `cross_origin_refused`;
//! - a request whose `Sec-Fetch-Site` is anything but `same-origin` or `none` (a browser's
//!   `cross-site` or `same-site`) is refused 403 `cross_origin_refused`;
//! - a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) is refused 403
//!   `cors_refused`; no answer ever carries a CORS header;
//! - a state-changing request (POST, PUT, PATCH, DELETE) must say `Content-Type:
//!   application/json` (parameters such as `charset` allowed), once, with or without a body:
//!   anything else, a missing or repeated type included, is refused 415
//!   `unsupported_media_type`. A page can send a
//!   form type or no type cross-site without a preflight, but never `application/json`.
//!
//! Every answer carries `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` and
//! `Referrer-Policy: no-referrer` ([`secure_headers`]).
//!
//! It owns these header rules only; it never authorizes (handlers do) and never reads a body.

use super::errors::ApiError;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::net::IpAddr;

/// The daemon's own origins, lower case, e.g. `https://localhost:7443`.
#[derive(Debug, Clone, Default)]
pub struct Origins(Vec<String>);

impl Origins {
    /// The origins of the server certificate's names (DNS and IP subject alternative names;
    /// wildcard names are not origins) on `port`.
    pub fn of_certificate(cert_der: &[u8], port: u16) -> Origins {
        let mut hosts = Vec::new();
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der)
            && let Ok(Some(san)) = cert.subject_alternative_name()
        {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) if !d.contains('*') => {
                        hosts.push(d.to_ascii_lowercase())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_of(b) {
                            hosts.push(host_of(ip));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        for h in hosts {
            out.push(format!("https://{h}:{port}"));
            if port == 443 {
                out.push(format!("https://{h}"));
            }
        }
        out.sort();
        out.dedup();
        Origins(out)
    }

    pub fn contains(&self, origin: &str) -> bool {
        let o = origin.trim().to_ascii_lowercase();
        self.0.contains(&o)
    }

    pub fn list(&self) -> &[String] {
        &self.0
    }
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn refused(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

/// Refuses a request a browser sent on behalf of another site, and CORS preflights.
pub fn check_origin(method: &Method, headers: &HeaderMap, own: &Origins) -> Result<(), ApiError> {
    // Every copy of a header is checked: a request is never judged by its first one only.
    for origin in headers.get_all(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("(not text)");
        if !own.contains(text) {
            return Err(refused(
                "cross_origin_refused",
                format!(
                    "cross-origin request refused: Origin {text:?} is not this daemon's own origin; the control API serves byokctl and scripts, never web pages of other sites"
                ),
            ));
        }
    }
    for site in headers.get_all("sec-fetch-site") {
        let text = site.to_str().unwrap_or("(not text)");
        if !matches!(text, "same-origin" | "none") {
            return Err(refused(
                "cross_origin_refused",
                format!(
                    "cross-site request refused: Sec-Fetch-Site is {text:?}; the control API serves byokctl and scripts, never web pages of other sites"
                ),
            ));
        }
    }
    if *method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        return Err(refused(
            "cors_refused",
            "CORS preflight refused: the control API allows no cross-origin requests".to_owned(),
        ));
    }
    Ok(())
}

/// Whether a method changes state (and so needs a JSON content type).
pub fn changes_state(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Refuses a state-changing request that does not say `Content-Type: application/json`.
pub fn check_content_type(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if !changes_state(method) {
        return Ok(());
    }
    let mut all = headers.get_all(header::CONTENT_TYPE).iter();
    let (given, repeated) = (all.next().map(|v| v.to_str()), all.next().is_some());
    if repeated {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{method} requests need exactly one Content-Type: application/json; this one has several"
            ),
        ));
    }
    let media = match given {
        Some(Ok(t)) => t
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
        _ => String::new(),
    };
    if media == "application/json" {
        return Ok(());
    }
    let what = match given {
        None => "no Content-Type".to_owned(),
        Some(Ok(t)) => format!("Content-Type {t:?}"),
        Some(Err(_)) => "a Content-Type that is not text".to_owned(),
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "{method} requests need Content-Type: application/json (also without a body); this one has {what}"
        ),
    ))
}

/// The headers every answer carries.
pub fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn own() -> Origins {
        Origins(vec!["https://localhost:7443".into()])
    }

    #[test]
    fn only_own_origins_and_same_origin_fetches_pass() {
        let post = Method::POST;
        assert!(check_origin(&post, &headers(&[]), &own()).is_ok());
        assert!(
            check_origin(
                &post,
                &headers(&[("origin", "https://LOCALHOST:7443")]),
                &own()
            )
            .is_ok()
        );
        for bad in [
            "https://evil.example",
            "https://localhost:7444",
            "http://localhost:7443",
            "null",
        ] {
            let h = {
                let mut h = HeaderMap::new();
                h.insert("origin", HeaderValue::from_str(bad).unwrap());
                h
            };
            let e = check_origin(&post, &h, &own()).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::FORBIDDEN, "cross_origin_refused")
            );
        }
        for site in ["cross-site", "same-site", "bogus"] {
            let mut h = HeaderMap::new();
            h.insert("sec-fetch-site", HeaderValue::from_str(site).unwrap());
            assert!(check_origin(&Method::GET, &h, &own()).is_err(), "{site}");
        }
        for site in ["same-origin", "none"] {
            let mut h = HeaderMap::new();
            h.insert("sec-fetch-site", HeaderValue::from_str(site).unwrap());
            assert!(check_origin(&Method::GET, &h, &own()).is_ok(), "{site}");
        }
        let e = check_origin(
            &Method::OPTIONS,
            &headers(&[("access-control-request-method", "POST")]),
            &own(),
        )
        .unwrap_err();
        assert_eq!(e.code, "cors_refused");
    }

    #[test]
    fn state_changes_need_a_json_content_type() {
        assert!(check_content_type(&Method::GET, &headers(&[])).is_ok());
        assert!(
            check_content_type(
                &Method::POST,
                &headers(&[("content-type", "application/json; charset=utf-8")])
            )
            .is_ok()
        );
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                check_content_type(&m, &headers(&[])).unwrap_err().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json-patch+json",
        ] {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_str(t).unwrap());
            assert_eq!(
                check_content_type(&Method::POST, &h).unwrap_err().code,
                "unsupported_media_type",
                "{t}"
            );
        }
    }

    #[test]
    fn every_copy_of_a_header_is_checked() {
        let mut h = HeaderMap::new();
        h.append("origin", HeaderValue::from_static("https://localhost:7443"));
        h.append("origin", HeaderValue::from_static("https://evil.example"));
        assert!(check_origin(&Method::POST, &h, &own()).is_err());
        let mut h = HeaderMap::new();
        h.append("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.append("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_origin(&Method::POST, &h, &own()).is_err());
        let mut h = HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(
            check_content_type(&Method::POST, &h).unwrap_err().code,
            "unsupported_media_type"
        );
    }

    #[test]
    fn origins_come_from_the_certificate_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let p = rcgen::CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "*.example.com".to_owned(),
        ])
        .unwrap();
        let cert = p.self_signed(&key).unwrap();
        let o = Origins::of_certificate(cert.der(), 7443);
        assert_eq!(
            o.list(),
            ["https://127.0.0.1:7443", "https://localhost:7443"]
        );
    }
}
