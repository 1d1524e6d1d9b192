//! The service base URL: `https://host[:port]/prefix`.

use rustls_pki_types::ServerName;

use crate::error::{ClientError, Result};

/// A parsed service base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given.
    pub url: String,
    /// Host name or IP address (no brackets).
    pub host: String,
    /// TCP port (443 unless given).
    pub port: u16,
    /// The path prefix without a trailing slash (`/onlineca`, or empty).
    pub prefix: String,
}

impl Endpoint {
    /// Parses `https://host[:port][/prefix]`. Only HTTPS: the certificate endpoint
    /// is never served in the clear.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let bad = |reason: &str| ClientError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: hyper::Uri = url
            .trim()
            .parse()
            .map_err(|e| bad(&format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(_) => return Err(bad("only https:// URLs are supported")),
            None => {
                return Err(bad(
                    "give the full base URL, for example https://ca.example.org/onlineca",
                ));
            }
        }
        if uri.query().is_some() {
            return Err(bad("the base URL cannot have a query"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not accepted; use --user"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        ServerName::try_from(host.clone()).map_err(|_| bad("invalid host name"))?;
        Ok(Endpoint {
            url: url.trim().to_string(),
            port: authority.port_u16().unwrap_or(443),
            prefix: uri.path().trim_end_matches('/').to_string(),
            host,
        })
    }

    /// `host:port` for messages and connecting.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The TLS server name.
    pub fn server_name(&self) -> ServerName<'static> {
        // Checked in parse().
        ServerName::try_from(self.host.clone())
            .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("valid name"))
    }

    /// The path of an API route under the prefix, e.g. `/onlineca/certificate/`.
    pub fn path(&self, route: &str) -> String {
        format!("{}/{route}", self.prefix)
    }

    /// The full URL of an API route (for messages).
    pub fn url_of(&self, route: &str) -> String {
        format!("https://{}{}", self.addr(), self.path(route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let e = Endpoint::parse("https://ca.example.org/onlineca/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("ca.example.org", 443));
        assert_eq!(e.path("certificate/"), "/onlineca/certificate/");
        let e = Endpoint::parse("https://127.0.0.1:8443/onlineca").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 8443));
        assert_eq!(e.addr(), "127.0.0.1:8443");
        let e = Endpoint::parse("https://[::1]:9/").unwrap();
        assert_eq!((e.host.as_str(), e.addr()), ("::1", "[::1]:9".to_string()));
        assert_eq!(e.path("trustroots/"), "/trustroots/");
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "http://ca.example.org/onlineca",
            "ca.example.org/onlineca",
            "https://user:pw@ca.example.org/",
            "https://ca.example.org/x?y=1",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
