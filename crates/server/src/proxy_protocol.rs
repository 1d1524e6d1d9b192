//! The PROXY protocol (HAProxy's): the header a TCP load balancer writes before the
//! client's own bytes to say whose connection it passes on. Mutual TLS must end at
//! onlineca, so a balancer in front can only pass TCP through, and without this
//! header every client would seem to come from the balancer.
//!
//! Both versions are read: v1 (one text line, as nginx's `proxy_protocol on` sends)
//! and v2 (binary, as HAProxy's `send-proxy-v2` sends). The header is read only from
//! the networks of `[server] proxy_protocol_from`, and exactly: not one byte of the
//! TLS stream behind it is consumed. From anyone else, a stream that starts with a
//! header is refused, so that no client can name its own address.
//!
//! Parsing is the `ppp` crate's; what is here decides how many bytes to read (with
//! limits), and what the parsed header means for the client address.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio::net::TcpStream;

/// The v1 signature: the line starts with it.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The v2 signature: twelve bytes no other protocol starts with.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line the specification allows, CRLF included.
pub const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family and
/// protocol, and the length of what follows.
const V2_FIXED: usize = 16;
/// The most address and TLV bytes taken after a v2 header's fixed part: addresses
/// take at most 216 (two Unix paths); TLVs are not used here, and a balancer that
/// sends many is refused rather than buffered.
pub const V2_MAX_PAYLOAD: usize = 512;

/// The networks whose connections must start with a PROXY header
/// (`[server] proxy_protocol_from`); empty: the protocol is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of `proxy_protocol_from` that is not a network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a network like \"10.0.0.5/32\" or \"2001:db8::/64\" (or an address)")]
pub struct NetworkError(pub String);

impl TrustedProxies {
    /// Parses CIDR networks; a bare address stands for itself alone (/32 or /128).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<TrustedProxies, NetworkError> {
        list.iter()
            .map(|s| {
                let s = s.as_ref().trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| NetworkError(s.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether no network is listed (the PROXY protocol is off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is in one of the networks (an IPv4-mapped IPv6 address, as a
    /// dual-stack listener reports IPv4 peers, counts as the IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The networks, as `config check` shows them.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }
}

/// Whose connection a header says this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A client's, at this address.
    Client(SocketAddr),
    /// The balancer's own (a v2 `LOCAL` header, as health checks send; v1
    /// `UNKNOWN`; or an address family without an IP address): the connection's
    /// peer address stands.
    Balancer,
}

/// Why a connection's PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The balancer closed the connection before sending anything: a plain TCP
    /// health check.
    #[error("closed before a PROXY header")]
    Closed,
    /// The connection ended, or failed, within the header.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The stream starts with neither signature.
    #[error(
        "no PROXY protocol header (the balancer must send one: send-proxy-v2 or proxy_protocol on)"
    )]
    Missing,
    /// A v1 line with no end within the allowed length.
    #[error("PROXY v1 header longer than {V1_MAX} bytes")]
    V1TooLong,
    /// A v2 header announcing more than [`V2_MAX_PAYLOAD`] bytes.
    #[error("PROXY v2 header announces {0} bytes after its fixed part, more than {V2_MAX_PAYLOAD}")]
    V2TooLong(usize),
    /// A complete v1 line that is not a valid header.
    #[error("malformed PROXY v1 header: {0}")]
    V1(#[from] ppp::v1::BinaryParseError),
    /// A complete v2 header that is not a valid one.
    #[error("malformed PROXY v2 header: {0}")]
    V2(#[from] ppp::v2::ParseError),
}

/// How long the header at the start of `bytes` is: `Ok(Some(n))` once that is
/// known, `Ok(None)` while more bytes are needed to tell (every byte given so far
/// then belongs to the header), or why there is no acceptable header.
pub fn header_len(bytes: &[u8]) -> Result<Option<usize>, HeaderError> {
    if bytes.starts_with(V2_SIGNATURE) {
        let Some(len) = bytes.get(V2_FIXED - 2..V2_FIXED) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len > V2_MAX_PAYLOAD {
            return Err(HeaderError::V2TooLong(len));
        }
        return Ok(Some(V2_FIXED + len));
    }
    if bytes.starts_with(V1_SIGNATURE) {
        let window = &bytes[..bytes.len().min(V1_MAX)];
        return match window.iter().position(|&b| b == b'\n') {
            Some(i) => Ok(Some(i + 1)),
            None if bytes.len() >= V1_MAX => Err(HeaderError::V1TooLong),
            None => Ok(None),
        };
    }
    if is_signature_start(bytes) {
        return Ok(None);
    }
    Err(HeaderError::Missing)
}

/// Whether `bytes` (not empty) could be the start of either signature.
fn is_signature_start(bytes: &[u8]) -> bool {
    !bytes.is_empty() && (V1_SIGNATURE.starts_with(bytes) || V2_SIGNATURE.starts_with(bytes))
}

/// Whether `bytes`, the first bytes of a stream, begin a PROXY header: a signature,
/// or as much of one as has arrived. A TLS stream starts with 0x16, never with
/// either.
pub fn starts_like_header(bytes: &[u8]) -> bool {
    bytes.starts_with(V1_SIGNATURE) || bytes.starts_with(V2_SIGNATURE) || is_signature_start(bytes)
}

/// What a complete header (exactly its bytes, as [`header_len`] measured them) says.
pub fn parse(header: &[u8]) -> Result<Source, HeaderError> {
    if header.starts_with(V2_SIGNATURE) {
        use ppp::v2::{Addresses, Command, Header};
        let h = Header::try_from(header)?;
        if h.command == Command::Local {
            return Ok(Source::Balancer);
        }
        return Ok(match h.addresses {
            Addresses::IPv4(a) => client(a.source_address.into(), a.source_port),
            Addresses::IPv6(a) => client(a.source_address.into(), a.source_port),
            Addresses::Unspecified | Addresses::Unix(_) => Source::Balancer,
        });
    }
    use ppp::v1::{Addresses, Header};
    let h = Header::try_from(header)?;
    Ok(match h.addresses {
        Addresses::Tcp4(a) => client(a.source_address.into(), a.source_port),
        Addresses::Tcp6(a) => client(a.source_address.into(), a.source_port),
        Addresses::Unknown => Source::Balancer,
    })
}

/// A client address as the rest of the server should see it: an IPv4 client that a
/// balancer names in IPv6 form (`::ffff:192.0.2.7`) is the IPv4 address.
fn client(ip: IpAddr, port: u16) -> Source {
    Source::Client(SocketAddr::new(ip.to_canonical(), port))
}

/// Reads the PROXY header at the start of `tcp`, consuming exactly its bytes, and
/// says whose connection it is. The caller bounds the time it takes.
pub async fn read_header(tcp: &mut TcpStream) -> Result<Source, HeaderError> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; V2_FIXED + V2_MAX_PAYLOAD];
    let mut have = 0;
    loop {
        // Peek at what has arrived, then take only header bytes: the TLS stream
        // behind it stays in the socket for the handshake. Each turn consumes what
        // it peeked, so the next peek waits for new bytes rather than spinning.
        let n = tcp.peek(&mut buf[have..]).await?;
        if n == 0 {
            return Err(if have == 0 {
                HeaderError::Closed
            } else {
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()
            });
        }
        let seen = have + n;
        match header_len(&buf[..seen])? {
            Some(total) if total <= seen => {
                tcp.read_exact(&mut buf[have..total]).await?;
                return parse(&buf[..total]);
            }
            // `header_len` bounds `total` by the buffer, so more is still to come.
            _ => {
                tcp.read_exact(&mut buf[have..seen]).await?;
                have = seen;
            }
        }
    }
}

/// Whether the first bytes on `tcp` (peeked, not consumed) begin a PROXY header:
/// for connections from addresses not listed, which may not name their own
/// address. Waits for the first bytes; the caller bounds the time.
pub async fn peek_for_header(tcp: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; V2_SIGNATURE.len()];
    let n = tcp.peek(&mut buf).await?;
    Ok(starts_like_header(&buf[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn v2_ipv4(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut a = src.to_vec();
        a.extend_from_slice(&[10, 0, 0, 1]);
        a.extend_from_slice(&port.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        v2(1, 0x11, &a, &[])
    }

    /// Measures, then parses, a header followed by a TLS ClientHello's first bytes.
    fn read(bytes: &[u8]) -> Result<Source, HeaderError> {
        let mut stream = bytes.to_vec();
        stream.extend_from_slice(&[0x16, 0x03, 0x01, 0x02, 0x00]);
        let n = header_len(&stream)?.expect("complete");
        assert_eq!(n, bytes.len(), "the header's own bytes, none of the TLS");
        parse(&stream[..n])
    }

    fn client(s: &str) -> Source {
        Source::Client(s.parse().unwrap())
    }

    #[test]
    fn v1_ipv4_and_ipv6() {
        let h = b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n";
        assert_eq!(read(h).unwrap(), client("203.0.113.9:5555"));
        let h = b"PROXY TCP6 2001:db8::9 2001:db8::1 40000 443\r\n";
        assert_eq!(read(h).unwrap(), client("[2001:db8::9]:40000"));
        let h = b"PROXY TCP6 ::ffff:192.0.2.7 ::ffff:10.0.0.1 40000 443\r\n";
        assert_eq!(read(h).unwrap(), client("192.0.2.7:40000"));
    }

    #[test]
    fn v2_ipv4_and_ipv6_with_tlvs_ignored() {
        assert_eq!(
            read(&v2_ipv4([203, 0, 113, 9], 5555)).unwrap(),
            client("203.0.113.9:5555")
        );
        let mut a = "2001:db8::9"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
            .to_vec();
        a.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a.extend_from_slice(&40000u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        // An ALPN TLV and a NOOP TLV, as HAProxy may add.
        let tlvs = [0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x01, 0x00];
        assert_eq!(
            read(&v2(1, 0x21, &a, &tlvs)).unwrap(),
            client("[2001:db8::9]:40000")
        );
    }

    #[test]
    fn local_and_unknown_keep_the_balancer() {
        assert_eq!(read(&v2(0, 0x00, &[], &[])).unwrap(), Source::Balancer);
        // LOCAL with addresses (allowed): they are ignored.
        let mut h = v2_ipv4([203, 0, 113, 9], 1);
        h[12] = 0x20;
        assert_eq!(read(&h).unwrap(), Source::Balancer);
        assert_eq!(read(b"PROXY UNKNOWN\r\n").unwrap(), Source::Balancer);
        assert_eq!(
            read(b"PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n").unwrap(),
            Source::Balancer
        );
        // PROXY with no IP address (AF_UNSPEC).
        assert_eq!(read(&v2(1, 0x00, &[], &[])).unwrap(), Source::Balancer);
    }

    #[test]
    fn truncated_headers_ask_for_more() {
        let full = v2_ipv4([203, 0, 113, 9], 5555);
        for cut in 1..full.len() {
            let len = header_len(&full[..cut]).unwrap();
            assert!(
                len.is_none() || len == Some(full.len()),
                "cut at {cut}: {len:?}"
            );
        }
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n";
        for cut in 1..line.len() {
            assert!(header_len(&line[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        // A v2 header whose length runs past its addresses, parsed short, fails.
        assert!(parse(&full[..full.len() - 1]).is_err());
        // A v1 line cut before its end is not a header.
        assert!(parse(b"PROXY TCP4 203.0.113.9 10.0.0.1 5555\r\n").is_err());
    }

    #[test]
    fn oversized_headers_are_refused() {
        let mut line = b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 443".to_vec();
        line.resize(V1_MAX, b' ');
        assert!(matches!(header_len(&line), Err(HeaderError::V1TooLong)));
        // 107 bytes with the newline last is the longest allowed.
        let mut ok = b"PROXY UNKNOWN".to_vec();
        ok.resize(V1_MAX - 2, b' ');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(header_len(&ok).unwrap(), Some(V1_MAX));
        let big = v2(1, 0x11, &[0; 4], &vec![0; V2_MAX_PAYLOAD]);
        assert!(matches!(header_len(&big), Err(HeaderError::V2TooLong(516))));
        let most = v2(1, 0x11, &[0; 12], &vec![0; V2_MAX_PAYLOAD - 12]);
        assert_eq!(header_len(&most).unwrap(), Some(V2_FIXED + V2_MAX_PAYLOAD));
    }

    #[test]
    fn garbage_is_refused() {
        // A TLS ClientHello, plain HTTP: no header.
        for b in [&[0x16, 0x03, 0x01][..], b"GET / HTTP/1.1\r\n", b"PROXZ "] {
            assert!(matches!(header_len(b), Err(HeaderError::Missing)), "{b:?}");
            assert!(!starts_like_header(b), "{b:?}");
        }
        for bad in [
            &b"PROXY TCP4 203.0.113.9\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.9 10.0.0.1 99999 443\r\n",
            b"PROXY TCP5 203.0.113.9 10.0.0.1 1 443\r\n",
            b"PROXY TCP4 203.0.113.9 10.0.0.1 1 443\n",
            b"PROXY TCP4 \xff\xfe 10.0.0.1 1 443\r\n",
        ] {
            let n = header_len(bad).unwrap().unwrap();
            assert!(
                parse(&bad[..n]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Version 1 in the binary form, an unknown command, family or protocol.
        let mut h = v2_ipv4([1, 2, 3, 4], 1);
        h[12] = 0x11;
        assert!(parse(&h).is_err());
        let mut h = v2_ipv4([1, 2, 3, 4], 1);
        h[12] = 0x22;
        assert!(parse(&h).is_err());
        let mut h = v2_ipv4([1, 2, 3, 4], 1);
        h[13] = 0x41;
        assert!(parse(&h).is_err());
        // Shorter than its family's addresses.
        assert!(parse(&v2(1, 0x11, &[1, 2, 3, 4], &[])).is_err());
        assert!(parse(&v2(1, 0x21, &[0; 12], &[])).is_err());
    }

    #[test]
    fn signatures_are_recognised_as_they_arrive() {
        assert!(starts_like_header(b"P"));
        assert!(starts_like_header(b"PROXY TCP4"));
        assert!(starts_like_header(b"\r\n\r\n"));
        assert!(starts_like_header(&v2_ipv4([1, 2, 3, 4], 1)));
        assert!(!starts_like_header(b""));
        assert!(!starts_like_header(b"PO"));
    }

    #[test]
    fn networks_parse_and_match() {
        let t = TrustedProxies::parse(&["10.0.0.5/32", "::1/128", "192.0.2.0/24", "2001:db8::7"])
            .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(t.contains(ip("10.0.0.5")));
        assert!(!t.contains(ip("10.0.0.6")));
        assert!(t.contains(ip("192.0.2.200")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("2001:db8::7")));
        assert!(!t.contains(ip("2001:db8::8")));
        // A dual-stack listener's view of an IPv4 balancer.
        assert!(t.contains(ip("::ffff:10.0.0.5")));
        // Host bits are dropped: 192.0.2.9/24 is 192.0.2.0/24.
        let t2 = TrustedProxies::parse(&["192.0.2.9/24"]).unwrap();
        assert_eq!(t2.networks()[0].to_string(), "192.0.2.0/24");
        assert!(TrustedProxies::parse::<&str>(&[]).unwrap().is_empty());
        for bad in [
            "10.0.0/8",
            "10.0.0.5/33",
            "::1/129",
            "example.org",
            "",
            "10.0.0.5/",
        ] {
            assert_eq!(
                TrustedProxies::parse(&[bad]),
                Err(NetworkError(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn read_header_takes_exactly_the_header() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let header = v2_ipv4([203, 0, 113, 9], 5555);
        let line = b"PROXY TCP4 198.51.100.2 10.0.0.1 6666 443\r\n".to_vec();
        let sends: Vec<Vec<Vec<u8>>> = vec![
            // All at once, the ClientHello right behind it.
            vec![[&header[..], b"\x16rest"].concat()],
            // In pieces, as a slow network may deliver it.
            vec![
                header[..5].to_vec(),
                header[5..14].to_vec(),
                [&header[14..], b"\x16rest"].concat(),
            ],
            vec![
                line[..3].to_vec(),
                line[3..20].to_vec(),
                [&line[20..], b"\x16rest"].concat(),
            ],
        ];
        for (i, pieces) in sends.into_iter().enumerate() {
            let writer = tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.set_nodelay(true).unwrap();
                for p in pieces {
                    c.write_all(&p).await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                c
            });
            let (mut tcp, _) = listener.accept().await.unwrap();
            let src = read_header(&mut tcp).await.unwrap();
            let want = if i == 2 {
                client("198.51.100.2:6666")
            } else {
                client("203.0.113.9:5555")
            };
            assert_eq!(src, want, "case {i}");
            let mut rest = [0u8; 5];
            tcp.read_exact(&mut rest).await.unwrap();
            assert_eq!(
                &rest, b"\x16rest",
                "case {i}: the stream behind is untouched"
            );
            drop(writer.await.unwrap());
        }
        // Closed at once (a TCP health check), and closed within the header.
        for bytes in [&b""[..], &header[..10]] {
            let empty = bytes.is_empty();
            let bytes = bytes.to_vec();
            let writer = tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(&bytes).await.unwrap();
            });
            let (mut tcp, _) = listener.accept().await.unwrap();
            writer.await.unwrap();
            let e = read_header(&mut tcp).await.unwrap_err();
            assert!(
                matches!(
                    (&e, empty),
                    (HeaderError::Closed, true) | (HeaderError::Io(_), false)
                ),
                "{e:?}"
            );
        }
    }
}
