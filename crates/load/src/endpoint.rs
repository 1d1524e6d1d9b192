//! The target URL, restricted to loopback addresses.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{Context, Result, bail};
use rustls_pki_types::ServerName;

/// Where requests go: a loopback socket address, the TLS server name and the HTTP
/// `Host`, and the URL's path prefix.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The address connected to.
    pub addr: SocketAddr,
    /// The name the server's certificate must carry (an IP SAN for an address).
    pub server_name: ServerName<'static>,
    /// The `Host` header value.
    pub authority: String,
    /// The URL's path without a trailing slash (`/onlineca`, or empty).
    pub prefix: String,
}

impl Endpoint {
    /// Parses `https://HOST[:PORT][/PATH]`; refuses any host that is not loopback.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let rest = url
            .strip_prefix("https://")
            .with_context(|| format!("{url}: only https:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            bail!("{url}: no query or fragment, please");
        }
        let (host, port) =
            split_host_port(authority).with_context(|| format!("{url}: bad host or port"))?;
        let addr = loopback_addr(host, port)?;
        let server_name = ServerName::try_from(host.to_string())
            .with_context(|| format!("{host} is not a valid TLS server name"))?;
        Ok(Endpoint {
            addr,
            server_name,
            authority: authority.to_string(),
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The full path of `route` (which starts with `/`) under the prefix.
    pub fn path(&self, route: &str) -> String {
        format!("{}{route}", self.prefix)
    }
}

/// `host[:port]` or `[v6][:port]` → (host without brackets, port).
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (&rest[..end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    (!host.is_empty()).then_some((host, port))
}

/// The address to connect to, if `host` is loopback (127.0.0.0/8, ::1, or
/// `localhost` resolving only to those).
fn loopback_addr(host: &str, port: u16) -> Result<SocketAddr> {
    let refuse = || {
        anyhow::anyhow!(
            "refusing {host}: onlineca-load only drives servers on this machine \
             (127.0.0.0/8, ::1 or localhost)"
        )
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if ip.is_loopback() {
            Ok(SocketAddr::new(ip, port))
        } else {
            Err(refuse())
        };
    }
    if !host.eq_ignore_ascii_case("localhost") {
        return Err(refuse());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(refuse());
    }
    Ok(addrs[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_parse() {
        let e = Endpoint::parse("https://127.0.0.1:8443/onlineca/").unwrap();
        assert_eq!(e.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(e.prefix, "/onlineca");
        assert_eq!(e.path("/certificate/"), "/onlineca/certificate/");
        assert_eq!(e.authority, "127.0.0.1:8443");
        let e = Endpoint::parse("https://[::1]:9000").unwrap();
        assert_eq!(e.addr, "[::1]:9000".parse().unwrap());
        assert_eq!(e.prefix, "");
        let e = Endpoint::parse("https://127.1.2.3").unwrap();
        assert_eq!(e.addr.port(), 443);
    }

    #[test]
    fn other_hosts_are_refused() {
        for url in [
            "https://10.0.0.1:8443/onlineca",
            "https://example.org/onlineca",
            "https://[2001:db8::1]:443",
            "https://0.0.0.0:8443",
            "http://127.0.0.1:8443",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
        let e = Endpoint::parse("https://192.168.1.1/").unwrap_err();
        assert!(
            e.to_string()
                .contains("only drives servers on this machine"),
            "{e}"
        );
    }
}
