//! Prometheus metrics: one registry per server instance (so that tests running
//! several servers in one process do not share counts), exposed by the admin
//! listener. Each event is counted in the one place it happens.

use std::future::Future;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set: a list of name/value pairs (few, with bounded values).
type Labels = Vec<(&'static str, String)>;

/// Latency buckets from 1 ms to ~33 s: argon2 alone takes tens of milliseconds,
/// and a request is cut off by its timeout.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Latency buckets from 0.1 ms to ~3 s for single store operations.
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The counters, gauges and histograms of one server instance.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    issued: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    store_ops: StoreMetrics,
    /// Connections open on the public listener.
    pub open_connections: Gauge,
    ca_not_after: Family<Labels, Gauge>,
    /// Audit records that could not be written.
    pub audit_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("onlineca");
        let issued = Family::<Labels, Counter>::default();
        registry.register(
            "certificates_issued",
            "Certificates issued (and recorded), by authentication method",
            issued.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered on the public listener, by route and status",
            requests.clone(),
        );
        let request_duration =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time to answer a request on the public listener, by route",
            request_duration.clone(),
        );
        let store_duration =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(store_histogram);
        registry.register(
            "store_operation_duration_seconds",
            "Time of store operations made while answering requests, by operation",
            store_duration.clone(),
        );
        let store_errors = Family::<Labels, Counter>::default();
        registry.register(
            "store_errors",
            "Store operations that failed while answering requests, by operation",
            store_errors.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Connections open on the public listener",
            open_connections.clone(),
        );
        let ca_not_after = Family::<Labels, Gauge>::default();
        registry.register(
            "ca_not_after_seconds",
            "End of validity (Unix time) of each CA certificate served in the trust roots",
            ca_not_after.clone(),
        );
        let audit_errors = Counter::default();
        registry.register(
            "audit_errors",
            "Audit records that could not be written (with [audit] required, each failed its request)",
            audit_errors.clone(),
        );
        Metrics {
            registry,
            audit_errors,
            issued,
            requests,
            request_duration,
            store_ops: StoreMetrics {
                duration: store_duration,
                errors: store_errors,
            },
            open_connections,
            ca_not_after,
        }
    }

    /// Registers the password check's own gauges and counters (they live where the
    /// events happen: the worker pool and the credential cache).
    pub fn register_passwords(&mut self, check: &mut crate::auth::PasswordCheck) {
        check.store_metrics = self.store_ops.clone();
        check.lockout.store_metrics = self.store_ops.clone();
        let (in_flight, queued) = check.pool_gauges();
        self.registry.register(
            "password_verifications_in_flight",
            "argon2 password verifications being computed",
            in_flight,
        );
        self.registry.register(
            "password_verifications_queued",
            "argon2 password verifications waiting for a worker",
            queued,
        );
        let (hits, misses) = check.cache.counters();
        self.registry.register(
            "credential_cache_hits",
            "Password checks answered by the credential cache (no argon2)",
            hits,
        );
        self.registry.register(
            "credential_cache_misses",
            "Password checks of a known user that the credential cache could not answer",
            misses,
        );
    }

    /// One certificate issued and recorded, by `method` (password, retriever, ...).
    pub fn issued(&self, method: &str) {
        self.issued
            .get_or_create(&vec![("method", method.to_string())])
            .inc();
    }

    /// One request answered on `route` with `status`, taking `seconds`.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.request_duration
            .get_or_create(&vec![("route", route.to_string())])
            .observe(seconds);
    }

    /// Sets the end of validity of the CA certificate named `ca`.
    pub fn ca_not_after(&self, ca: &str, unix: i64) {
        self.ca_not_after
            .get_or_create(&vec![("ca", ca.to_string())])
            .set(unix);
    }

    /// Runs the store operation `op`, timing it and counting a failure.
    pub async fn store<T, E>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.store_ops.time(op, f).await
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Latency and failures of store operations; a cheap handle (shared counts) for
/// the parts of the request path that reach the store outside [`Metrics`].
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    errors: Family<Labels, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            duration: Family::new_with_constructor(store_histogram),
            errors: Family::default(),
        }
    }
}

impl StoreMetrics {
    /// Runs the store operation `op`, timing it and counting a failure.
    pub async fn time<T, E>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let r = f.await;
        let labels = vec![("op", op.to_string())];
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if r.is_err() {
            self.errors.get_or_create(&labels).inc();
        }
        r
    }
}

/// A gauge raised while this guard lives.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Raises `g` by one until dropped.
    pub fn new(g: &Gauge) -> Self {
        g.inc();
        GaugeGuard(g.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_few() {
        use crate::routes::route_label;
        assert_eq!(
            route_label("/onlineca", "/onlineca/certificate/"),
            "certificate"
        );
        assert_eq!(
            route_label("/onlineca/", "/onlineca/trustroots"),
            "trustroots"
        );
        assert_eq!(route_label("/onlineca", "/onlineca/crl"), "crl");
        for other in [
            "/metrics",
            "/onlineca/x",
            "/onlineca/certificate/x",
            "/",
            "",
        ] {
            assert_eq!(route_label("/onlineca", other), "other", "{other}");
        }
        assert_eq!(route_label("", "/certificate"), "certificate");
    }

    #[tokio::test]
    async fn counts_and_renders() {
        let m = Metrics::new();
        m.issued("password");
        m.issued("password");
        m.request("certificate", 401, 0.01);
        let _ = m.store("get_user", async { Err::<(), ()>(()) }).await;
        {
            let _g = GaugeGuard::new(&m.open_connections);
        }
        let text = m.render().unwrap();
        assert!(
            text.contains("onlineca_certificates_issued_total{method=\"password\"} 2"),
            "{text}"
        );
        assert!(text.contains("onlineca_requests_total{route=\"certificate\",status=\"401\"} 1"));
        assert!(text.contains("onlineca_store_errors_total{op=\"get_user\"} 1"));
        assert!(text.contains("onlineca_open_connections 0"));
    }
}
