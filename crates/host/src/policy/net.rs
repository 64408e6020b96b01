//! The network allow-list: `capabilities.net` and `--allow-net HOST:PORT`.
//!
//! A rule is `HOST:PORT`: HOST an IPv4 address, an IPv6 address in brackets (`[::1]`),
//! `localhost` or another host name; PORT a number (0 to 65535) or `*` for any. Host names are
//! resolved once, when the policy is applied, and the rule then allows the addresses they
//! resolved to. The check ([`NetAllow::allows`]) is wasmtime-wasi's socket address check, so
//! it holds for every `wasi:sockets` connect, bind, listen and send:
//!
//! - connect (TCP) and send (UDP): the remote address must match a rule;
//! - bind and listen: the local address must match a rule, except the wildcard address with
//!   port 0, the implicit bind the OS does before a connect or a send (listening there still
//!   needs a rule for the wildcard address, such as `0.0.0.0:*`);
//! - accept and receive: allowed (the listening or bound socket was granted).
//!
//! Without rules there is no network: TCP and UDP are off and every address is denied. Name
//! lookups (`wasi:sockets/ip-name-lookup`) are on only when some rule names a host; they can
//! resolve any name, but only granted addresses can be reached. A denied address reaches the
//! program as the WASI error `access-denied` (`EACCES`), never as a trap.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;

/// A host of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetHost {
    /// An IP address.
    Ip(IpAddr),
    /// A host name (lowercase), resolved when the policy is applied.
    Name(String),
}

/// One `HOST:PORT` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    /// The host.
    pub host: NetHost,
    /// The port; `None` for `*` (any).
    pub port: Option<u16>,
}

/// Why a rule does not parse, or a host name does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetRuleError {
    /// No `:PORT`.
    #[error("`{0}`: expected HOST:PORT (PORT a number or `*`, e.g. 127.0.0.1:8080 or localhost:*)")]
    NoPort(String),
    /// The port is not a number from 0 to 65535 nor `*`.
    #[error("`{rule}`: port `{port}` is not a number from 0 to 65535 or `*`")]
    BadPort {
        /// The rule.
        rule: String,
        /// The port text.
        port: String,
    },
    /// The host is neither an IP address nor a host name.
    #[error(
        "`{rule}`: host `{host}` is not an IP address or a host name (letters, digits, `-` and `.`; an IPv6 address goes in brackets, e.g. [::1]:80)"
    )]
    BadHost {
        /// The rule.
        rule: String,
        /// The host text.
        host: String,
    },
    /// A host name does not resolve.
    #[error("`{rule}`: cannot resolve `{host}`: {message}")]
    Unresolved {
        /// The rule.
        rule: String,
        /// The host name.
        host: String,
        /// The resolver's reason.
        message: String,
    },
}

impl NetRule {
    /// Parses `HOST:PORT`.
    ///
    /// # Errors
    /// [`NetRuleError`] naming the rule and what is wrong with it.
    pub fn parse(rule: &str) -> Result<NetRule, NetRuleError> {
        let (host, port) = if let Some(rest) = rule.strip_prefix('[') {
            let (h, p) = rest.split_once(']').ok_or_else(|| NetRuleError::BadHost {
                rule: rule.into(),
                host: rule.into(),
            })?;
            let p = p
                .strip_prefix(':')
                .ok_or_else(|| NetRuleError::NoPort(rule.into()))?;
            let ip = h
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| NetRuleError::BadHost {
                    rule: rule.into(),
                    host: h.into(),
                })?;
            (NetHost::Ip(IpAddr::V6(ip)), p)
        } else {
            let (h, p) = rule
                .rsplit_once(':')
                .ok_or_else(|| NetRuleError::NoPort(rule.into()))?;
            let host = if let Ok(ip) = h.parse::<std::net::Ipv4Addr>() {
                NetHost::Ip(IpAddr::V4(ip))
            } else if is_host_name(h) {
                NetHost::Name(h.to_ascii_lowercase())
            } else {
                return Err(NetRuleError::BadHost {
                    rule: rule.into(),
                    host: h.into(),
                });
            };
            (host, p)
        };
        let port = if port == "*" {
            None
        } else {
            Some(port.parse::<u16>().map_err(|_| NetRuleError::BadPort {
                rule: rule.into(),
                port: port.into(),
            })?)
        };
        Ok(NetRule { host, port })
    }
}

impl std::fmt::Display for NetRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            NetHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            NetHost::Ip(ip) => write!(f, "{ip}")?,
            NetHost::Name(n) => write!(f, "{n}")?,
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => write!(f, ":*"),
        }
    }
}

/// A DNS name: dot-separated labels of 1 to 63 letters, digits and `-` (not at either end),
/// 253 characters at most, not all digits and dots (that would be a malformed IPv4 address).
fn is_host_name(h: &str) -> bool {
    let h = h.strip_suffix('.').unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && !h.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Rules resolved to addresses: what a program may connect to, bind and listen on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetAllow {
    /// Allowed (address, port) pairs; port `None` is any.
    addrs: Vec<(IpAddr, Option<u16>)>,
    /// Every address (the old `network = true`).
    any: bool,
    /// Some rule names a host, so name lookups are allowed.
    names: bool,
}

impl NetAllow {
    /// Resolves `rules` (host names through the system resolver).
    ///
    /// # Errors
    /// [`NetRuleError::Unresolved`] for a host name that does not resolve.
    pub fn resolve(rules: &[NetRule]) -> Result<NetAllow, NetRuleError> {
        let mut allow = NetAllow::default();
        for rule in rules {
            match &rule.host {
                NetHost::Ip(ip) => allow.addrs.push((ip.to_canonical(), rule.port)),
                NetHost::Name(name) => {
                    allow.names = true;
                    let found = (name.as_str(), 0).to_socket_addrs().map_err(|e| {
                        NetRuleError::Unresolved {
                            rule: rule.to_string(),
                            host: name.clone(),
                            message: e.to_string(),
                        }
                    })?;
                    for a in found {
                        allow.addrs.push((a.ip().to_canonical(), rule.port));
                    }
                }
            }
        }
        Ok(allow)
    }

    /// Every address and name (the old `capabilities.network = true`).
    pub fn everything() -> NetAllow {
        NetAllow {
            addrs: Vec::new(),
            any: true,
            names: true,
        }
    }

    /// Whether the list grants anything at all.
    pub fn is_empty(&self) -> bool {
        !self.any && self.addrs.is_empty()
    }

    /// Whether name lookups are allowed (some rule names a host).
    pub fn allows_name_lookup(&self) -> bool {
        self.names
    }

    /// Whether a program may use `addr` for `how` (see the [module docs](self)).
    pub fn allows(&self, addr: SocketAddr, how: SocketAddrUse) -> bool {
        if self.any {
            return true;
        }
        if self.is_empty() {
            return false;
        }
        let matches = || {
            let ip = addr.ip().to_canonical();
            self.addrs
                .iter()
                .any(|&(a, p)| a == ip && p.is_none_or(|p| p == addr.port()))
        };
        match how {
            SocketAddrUse::TcpAccept | SocketAddrUse::UdpReceive => true,
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                (addr.ip().is_unspecified() && addr.port() == 0) || matches()
            }
            SocketAddrUse::TcpListen | SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => {
                matches()
            }
        }
    }

    /// Configures `wasi`: TCP and UDP on when anything is granted, name lookups when a rule
    /// names a host, and the socket address check. An empty list turns the network off.
    pub fn apply(self, wasi: &mut wasmtime_wasi::WasiCtxBuilder) {
        let on = !self.is_empty();
        wasi.allow_tcp(on);
        wasi.allow_udp(on);
        wasi.allow_ip_name_lookup(on && self.names);
        let allow = Arc::new(self);
        wasi.socket_addr_check(move |addr, how| {
            let ok = allow.allows(addr, how);
            Box::pin(async move { ok })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(rules: &[&str]) -> NetAllow {
        let rules: Vec<NetRule> = rules.iter().map(|r| NetRule::parse(r).unwrap()).collect();
        NetAllow::resolve(&rules).unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rules_parse() {
        assert_eq!(
            NetRule::parse("127.0.0.1:8080"),
            Ok(NetRule {
                host: NetHost::Ip("127.0.0.1".parse().unwrap()),
                port: Some(8080)
            })
        );
        assert_eq!(
            NetRule::parse("LocalHost:*"),
            Ok(NetRule {
                host: NetHost::Name("localhost".into()),
                port: None
            })
        );
        assert_eq!(NetRule::parse("[::1]:0").unwrap().to_string(), "[::1]:0");
        assert_eq!(
            NetRule::parse("example.com:443").unwrap().to_string(),
            "example.com:443"
        );
        let err = |r: &str| NetRule::parse(r).unwrap_err().to_string();
        assert_eq!(
            err("127.0.0.1:99999"),
            "`127.0.0.1:99999`: port `99999` is not a number from 0 to 65535 or `*`"
        );
        assert!(err("127.0.0.1:http").contains("port `http`"));
        assert!(err("127.0.0.1").starts_with("`127.0.0.1`: expected HOST:PORT"));
        assert!(err("::1:80").contains("host `::1`"), "{}", err("::1:80"));
        assert!(err("bad host:80").contains("host `bad host`"));
        assert!(err(":80").contains("host ``"));
        assert!(err("1.2.3.400:80").contains("host `1.2.3.400`"));
        assert!(err("-a.com:80").contains("host `-a.com`"));
        assert!(err("[::1]80").contains("expected HOST:PORT"));
        assert!(err("[zz]:80").contains("host `zz`"));
    }

    #[test]
    fn connect_needs_a_matching_rule() {
        let a = allow(&["127.0.0.1:8080", "10.0.0.1:*"]);
        assert!(a.allows(sa("127.0.0.1:8080"), SocketAddrUse::TcpConnect));
        assert!(!a.allows(sa("127.0.0.1:8081"), SocketAddrUse::TcpConnect));
        assert!(!a.allows(sa("127.0.0.2:8080"), SocketAddrUse::TcpConnect));
        assert!(a.allows(sa("10.0.0.1:1"), SocketAddrUse::TcpConnect));
        assert!(a.allows(sa("10.0.0.1:65535"), SocketAddrUse::UdpSend));
        // IPv4-mapped IPv6 is the same address.
        assert!(a.allows(sa("[::ffff:127.0.0.1]:8080"), SocketAddrUse::TcpConnect));
        assert!(!a.allows(sa("[::1]:8080"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn bind_and_listen() {
        let a = allow(&["127.0.0.1:8080"]);
        // The implicit bind before a connect.
        assert!(a.allows(sa("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(a.allows(sa("[::]:0"), SocketAddrUse::UdpBind));
        // Listening on the wildcard (implicitly bound) is not granted.
        assert!(!a.allows(sa("0.0.0.0:0"), SocketAddrUse::TcpListen));
        assert!(!a.allows(sa("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(a.allows(sa("127.0.0.1:8080"), SocketAddrUse::TcpBind));
        assert!(a.allows(sa("127.0.0.1:8080"), SocketAddrUse::TcpListen));
        assert!(!a.allows(sa("127.0.0.1:9090"), SocketAddrUse::TcpListen));
        assert!(a.allows(sa("127.0.0.1:50000"), SocketAddrUse::TcpAccept));
    }

    #[test]
    fn nothing_granted_denies_everything() {
        let a = allow(&[]);
        assert!(a.is_empty() && !a.allows_name_lookup());
        for how in [
            SocketAddrUse::TcpBind,
            SocketAddrUse::TcpConnect,
            SocketAddrUse::TcpAccept,
            SocketAddrUse::UdpBind,
            SocketAddrUse::UdpReceive,
        ] {
            assert!(!a.allows(sa("0.0.0.0:0"), how));
            assert!(!a.allows(sa("127.0.0.1:80"), how));
        }
        assert!(NetAllow::everything().allows(sa("1.2.3.4:5"), SocketAddrUse::TcpConnect));
    }

    #[test]
    fn names_resolve_and_allow_lookups() {
        let a = allow(&["localhost:*"]);
        assert!(a.allows_name_lookup());
        assert!(a.allows(sa("127.0.0.1:5000"), SocketAddrUse::TcpConnect));
        assert!(!allow(&["127.0.0.1:*"]).allows_name_lookup());
        let e = NetAllow::resolve(&[NetRule::parse("no-such-host.invalid:80").unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("`no-such-host.invalid:80`: cannot resolve `no-such-host.invalid`: "),
            "{e}"
        );
    }
}
