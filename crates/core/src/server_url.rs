//! The configured server: where the token may go.
//!
//! The token is sent only to this origin, and only over HTTPS unless the host is a loopback
//! address (the reference backend on this machine).

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl {
    base: Url,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("only http and https servers are supported")]
    Scheme,
    #[error("plain http is allowed only on this machine (localhost, 127.0.0.0/8, ::1); use https")]
    InsecureRemote,
    #[error("the server URL must not carry a user name, password, query or fragment")]
    ExtraParts,
}

impl ServerUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let mut base = Url::parse(text.trim()).map_err(|e| UrlError::Invalid(e.to_string()))?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) => {}
            "http" => return Err(UrlError::InsecureRemote),
            _ => return Err(UrlError::Scheme),
        }
        if !base.username().is_empty()
            || base.password().is_some()
            || base.query().is_some()
            || base.fragment().is_some()
            || base.host_str().is_none()
        {
            return Err(UrlError::ExtraParts);
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self { base })
    }

    /// `scheme://host:port`: the key the token is filed under, and the only place it goes.
    pub fn origin(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// The URL of an API path such as `usage` or `events?after=3`.
    pub fn api(&self, path: &str) -> Url {
        self.base
            .join(&format!("api/v1/{path}"))
            .unwrap_or_else(|_| self.base.clone())
    }

    /// True when `url` has this server's origin (scheme, host and port).
    pub fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin()
    }

    pub fn as_str(&self) -> &str {
        self.base.as_str()
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str())
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrl({})", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:8787",
            "http://localhost:1/",
            "http://[::1]:9",
            "https://q.example.com",
        ] {
            assert!(ServerUrl::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            ServerUrl::parse("http://q.example.com"),
            Err(UrlError::InsecureRemote)
        );
        assert_eq!(
            ServerUrl::parse("http://10.0.0.1"),
            Err(UrlError::InsecureRemote)
        );
        assert_eq!(ServerUrl::parse("ftp://x"), Err(UrlError::Scheme));
        assert_eq!(
            ServerUrl::parse("https://u:p@x.com"),
            Err(UrlError::ExtraParts)
        );
        assert!(matches!(
            ServerUrl::parse("nope"),
            Err(UrlError::Invalid(_))
        ));
    }

    #[test]
    fn api_paths_and_origin() {
        let s = ServerUrl::parse("http://127.0.0.1:8787").unwrap();
        assert_eq!(s.origin(), "http://127.0.0.1:8787");
        assert_eq!(
            s.api("events?after=3").as_str(),
            "http://127.0.0.1:8787/api/v1/events?after=3"
        );
        let other = Url::parse("http://127.0.0.1:8788/api/v1/stream").unwrap();
        assert!(!s.same_origin(&other));
        let prefixed = ServerUrl::parse("https://x.com/quota").unwrap();
        assert_eq!(
            prefixed.api("usage").as_str(),
            "https://x.com/quota/api/v1/usage"
        );
    }
}
