//! Which address a request comes from: its peer's, or — when the peer is a configured trusted
//! proxy — the rightmost `X-Forwarded-For` address that is not itself a trusted proxy (the
//! left part of that header is whatever the client wrote, so it is never believed). The result
//! goes into the audit log's `client_ip` and keys the per-address rate limits.

use ipnet::IpNet;
use std::net::IpAddr;

/// The address (`ClientIp`) a middleware put on the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// `10.0.0.0/8`, `2001:db8::/32` or a single address.
pub fn parse_range(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client's address for a request from `peer` carrying `forwarded_for` (every
/// `X-Forwarded-For` header value, in order).
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => continue,
            Ok(ip) => return ip,
            // Garbage in the chain: stop believing it here.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_are_believed_from_the_right() {
        let trusted: Vec<IpNet> = ["10.0.0.0/8", "192.0.2.7"]
            .iter()
            .map(|s| parse_range(s).unwrap())
            .collect();
        // A direct client: its header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
        // Through the proxy: the address the proxy saw.
        assert_eq!(
            client_ip(ip("10.1.2.3"), &["198.51.100.4"], &trusted),
            ip("198.51.100.4")
        );
        // A spoofed left part is skipped: the rightmost untrusted hop wins.
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                &["6.6.6.6, 198.51.100.4, 192.0.2.7"],
                &trusted
            ),
            ip("198.51.100.4")
        );
        // Several headers are one list.
        assert_eq!(
            client_ip(ip("10.1.2.3"), &["6.6.6.6", "198.51.100.4"], &trusted),
            ip("198.51.100.4")
        );
        // Nothing usable: the peer.
        assert_eq!(client_ip(ip("10.1.2.3"), &[], &trusted), ip("10.1.2.3"));
        assert_eq!(
            client_ip(ip("10.1.2.3"), &["not-an-ip"], &trusted),
            ip("10.1.2.3")
        );
        assert_eq!(
            client_ip(ip("10.1.2.3"), &["10.9.9.9"], &trusted),
            ip("10.1.2.3"),
            "all hops trusted: the peer"
        );
        assert!(parse_range("nonsense").is_none());
        assert!(parse_range("2001:db8::/32").is_some());
    }
}
