//! Outgoing HTTP for components: `wasi:http/outgoing-handler` and `wasi:http/types` from
//! wasmtime-wasi-http, linked only into components that import them, with every request checked
//! against an allow-list the caller gives ([`HttpAccess`]; the CLI builds it from the policy's
//! `capabilities.http`).
//!
//! **Deny by default.** Without an [`HttpAccess`] that grants the request's host and port, the
//! request is not sent: the guest's `future-incoming-response` resolves to the `wasi:http` error
//! code `HTTP-request-denied` (never a trap), and the host logs one line at `warn` level on the
//! tracing target `wasmlink::http`. The check is on the authority the guest wrote (its host as
//! written, its port or the scheme's default: 80 for `http`, 443 for `https`); the `host` header
//! is the authority (guests cannot set it), and redirects are not followed, so a request goes
//! only where it was checked to go.
//!
//! A request cannot outlive the call's wall-clock limit: its connect, first-byte and
//! between-bytes timeouts are cut to the time the call has left (wasmtime-wasi-http's default is
//! 600 s each, and a guest blocked on a host future is not interrupted by the epoch).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Decides whether a request to `(host, port)` may be sent.
type Check = Arc<dyn Fn(&str, u16) -> bool + Send + Sync>;

/// Which outgoing HTTP requests a component may send. The default denies every request.
#[derive(Clone, Default)]
pub struct HttpAccess {
    check: Option<Check>,
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.check.is_some() {
            "HttpAccess(checked)"
        } else {
            "HttpAccess(deny)"
        })
    }
}

impl HttpAccess {
    /// Denies every request (the default).
    pub fn deny() -> Self {
        Self::default()
    }

    /// Allows a request when `check(host, port)` says so: `host` as the request's authority
    /// names it (an IPv6 address in brackets), `port` the authority's or the scheme's default.
    pub fn allow_if(check: impl Fn(&str, u16) -> bool + Send + Sync + 'static) -> Self {
        Self {
            check: Some(Arc::new(check)),
        }
    }

    /// Whether a request to `host` on `port` may be sent.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.check.as_ref().is_some_and(|c| c(host, port))
    }
}

/// The wasi:http hooks of one store: the allow-list, and the deadline of the running call.
pub(crate) struct Hooks {
    access: HttpAccess,
    /// The component, as the log line names it.
    component: Arc<str>,
    /// When the running call must end (`--timeout`), if it has a limit.
    pub(crate) deadline: Option<Instant>,
}

impl Hooks {
    pub(crate) fn new(access: HttpAccess, component: Arc<str>) -> Self {
        Self {
            access,
            component,
            deadline: None,
        }
    }
}

/// `options` with every timeout at most `left`.
fn cut(options: Option<RequestOptions>, left: Duration) -> RequestOptions {
    let o = options.unwrap_or_default();
    let min = |t: Option<Duration>| Some(t.map_or(left, |t| t.min(left)));
    RequestOptions {
        connect_timeout: min(o.connect_timeout),
        first_byte_timeout: min(o.first_byte_timeout),
        between_bytes_timeout: min(o.between_bytes_timeout),
    }
}

/// What sending a request resolves to: the response and the future of its body's I/O.
type SentOutput = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;
type Sent = Box<dyn Future<Output = SentOutput> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Sent {
        let uri = request.uri();
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or("");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.access.allows(host, port) {
            tracing::warn!(
                target: "wasmlink::http",
                "{}: HTTP request to {host}:{port} denied: not granted by capabilities.http (--allow-http)",
                self.component
            );
            return Box::new(std::future::ready::<SentOutput>(Err(
                wasmtime_wasi_http::Error::HttpRequestDenied,
            )));
        }
        tracing::debug!(
            target: "wasmlink::http",
            "{}: {} {uri}",
            self.component,
            request.method()
        );
        let options = match self.deadline {
            Some(end) => Some(cut(options, end.saturating_duration_since(Instant::now()))),
            None => options,
        };
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}

/// Whether `component` imports any `wasi:http` interface.
pub(crate) fn imports_http(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("wasi:http/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_by_default() {
        assert!(!HttpAccess::default().allows("127.0.0.1", 80));
        let a = HttpAccess::allow_if(|h, p| h == "example.com" && p == 443);
        assert!(a.allows("example.com", 443));
        assert!(!a.allows("example.com", 80));
    }

    #[test]
    fn timeouts_are_cut_to_the_time_left() {
        let left = Duration::from_secs(2);
        let o = cut(None, left);
        assert_eq!(o.connect_timeout, Some(left));
        assert_eq!(o.between_bytes_timeout, Some(left));
        let given = RequestOptions {
            connect_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let o = cut(Some(given), left);
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(1)));
        assert_eq!(o.first_byte_timeout, Some(left));
    }
}
