//! The outgoing HTTP allow-list: `capabilities.http` and `--allow-http HOST[:PORT]`.
//!
//! Components that import `wasi:http/outgoing-handler` send requests through the host
//! (wasmtime-wasi-http), not through `wasi:sockets`, so `capabilities.net` does not govern them:
//! this list does. A rule is
//!
//! - `HOST`: the default ports only, 80 (`http`) and 443 (`https`);
//! - `HOST:PORT`: that port;
//! - `HOST:*`: any port.
//!
//! HOST is written as for [`NetRule`] (an IPv4 address, an IPv6 address in brackets, `localhost`
//! or another host name; the same parser) but it is matched against the request's authority
//! as the guest wrote it, case-insensitively, not against resolved addresses: granting
//! `api.example.com` grants requests addressed to that name, and `127.0.0.1:8080` does not grant
//! `localhost:8080`. Without rules every request is denied; a denied request reaches the guest
//! as the `wasi:http` error code `HTTP-request-denied`, never as a trap.

use std::net::IpAddr;

use super::net::{NetHost, NetRule, NetRuleError};

/// The ports a [`HttpRule`] grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPort {
    /// No port in the rule: 80 and 443, the default ports of `http` and `https`.
    Default,
    /// One port.
    Port(u16),
    /// `*`: any port.
    Any,
}

/// One `capabilities.http` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    /// The host as requests name it: lowercase, an IPv6 address without brackets.
    pub host: String,
    /// The ports.
    pub port: HttpPort,
}

impl HttpRule {
    /// Parses `HOST`, `HOST:PORT` or `HOST:*` (HOST as [`NetRule::parse`] takes it).
    ///
    /// # Errors
    /// [`NetRuleError`] naming the rule and what is wrong with it.
    pub fn parse(rule: &str) -> Result<HttpRule, NetRuleError> {
        if rule.contains("://") || rule.contains('/') {
            // A URL, not a host: say so rather than reading `http` as a host.
            return Err(NetRuleError::BadHost {
                rule: rule.into(),
                host: rule.into(),
            });
        }
        let (net, port) = match NetRule::parse(rule) {
            Ok(r) => {
                let port = r.port.map_or(HttpPort::Any, HttpPort::Port);
                (r, port)
            }
            // No port: the same host syntax, the default ports.
            Err(NetRuleError::NoPort(_)) => match NetRule::parse(&format!("{rule}:*")) {
                Ok(r) => (r, HttpPort::Default),
                Err(NetRuleError::NoPort(_) | NetRuleError::BadPort { .. }) => {
                    return Err(NetRuleError::BadHost {
                        rule: rule.into(),
                        host: rule.into(),
                    });
                }
                Err(e) => return Err(renamed(e, rule)),
            },
            Err(e) => return Err(e),
        };
        let host = match net.host {
            NetHost::Ip(IpAddr::V6(ip)) => ip.to_string(),
            NetHost::Ip(ip) => ip.to_string(),
            NetHost::Name(n) => n.strip_suffix('.').unwrap_or(&n).to_string(),
        };
        Ok(HttpRule { host, port })
    }

    /// Whether the rule grants a request to `host` (as [`HttpAllow::allows`] takes it) on
    /// `port`.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        self.host == host
            && match self.port {
                HttpPort::Default => port == 80 || port == 443,
                HttpPort::Port(p) => p == port,
                HttpPort::Any => true,
            }
    }
}

impl std::fmt::Display for HttpRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        match self.port {
            HttpPort::Default => Ok(()),
            HttpPort::Port(p) => write!(f, ":{p}"),
            HttpPort::Any => write!(f, ":*"),
        }
    }
}

/// `e` about the rule `rule` (it was found in `rule:*`).
fn renamed(e: NetRuleError, rule: &str) -> NetRuleError {
    match e {
        NetRuleError::BadHost { host, .. } => NetRuleError::BadHost {
            rule: rule.into(),
            host,
        },
        other => other,
    }
}

/// The hosts a component may send HTTP requests to. Empty (the default): none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAllow {
    rules: Vec<HttpRule>,
}

impl HttpAllow {
    /// Parses every rule.
    ///
    /// # Errors
    /// The first rule that does not parse.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<HttpAllow, NetRuleError> {
        let rules = rules
            .iter()
            .map(|r| HttpRule::parse(r.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpAllow { rules })
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules.
    pub fn rules(&self) -> &[HttpRule] {
        &self.rules
    }

    /// Whether a request to `host` (the authority's host: any case, an IPv6 address with or
    /// without brackets, a trailing dot or not) on `port` (the authority's, else the scheme's
    /// default) is granted.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        // An IP address compares in its canonical spelling (`0:0::1` is `::1`).
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host,
        };
        self.rules.iter().any(|r| r.matches(&host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_and_without_ports() {
        let p = |r: &str| HttpRule::parse(r).unwrap();
        assert_eq!(p("API.Example.com").host, "api.example.com");
        assert_eq!(p("api.example.com").port, HttpPort::Default);
        assert_eq!(p("127.0.0.1:8080").port, HttpPort::Port(8080));
        assert_eq!(p("localhost:*").port, HttpPort::Any);
        assert_eq!(p("[::1]:8080").host, "::1");
        assert_eq!(p("[::1]").port, HttpPort::Default);
        assert_eq!(p("[::1]:8080").to_string(), "[::1]:8080");
        assert_eq!(p("example.com").to_string(), "example.com");
        let err = |r: &str| HttpRule::parse(r).unwrap_err().to_string();
        assert!(
            err("bad host").contains("host `bad host`"),
            "{}",
            err("bad host")
        );
        assert!(err("a.com:99999").contains("port `99999`"));
        assert!(err("a.com:http").contains("port `http`"));
        assert!(err("").contains("host ``"), "{}", err(""));
        assert!(
            err("http://a.com").contains("`http://a.com`"),
            "{}",
            err("http://a.com")
        );
    }

    #[test]
    fn requests_match_host_and_port() {
        let a = HttpAllow::parse(&["api.example.com", "127.0.0.1:8080", "[::1]:*"]).unwrap();
        assert!(a.allows("api.example.com", 443));
        assert!(a.allows("API.example.com.", 80));
        assert!(!a.allows("api.example.com", 8080));
        assert!(!a.allows("evil.example.com", 443));
        assert!(!a.allows("example.com", 443));
        assert!(a.allows("127.0.0.1", 8080));
        assert!(!a.allows("127.0.0.1", 8081));
        assert!(!a.allows("localhost", 8080));
        assert!(a.allows("[::1]", 1));
        assert!(a.allows("0:0::1", 9));
        assert!(!HttpAllow::default().allows("127.0.0.1", 80));
    }
}
