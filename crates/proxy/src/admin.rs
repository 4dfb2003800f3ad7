//! The admin interface (loopback only): `/config_dump`, `/clusters`,
//! `/listeners`, `/stats` (also `?format=json`), `/server_info`, `/ready`.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use tokio::net::TcpListener;

use crate::Proxy;

/// `/` and `/help`: what this admin interface serves (Envoy lists its
/// commands the same way).
const HELP: &str = "admin commands are:
  /: Admin home page
  /clusters: upstream cluster status (?format=json)
  /config_dump: dump current Envoy configs
  /help: print out list of admin commands
  /listeners: print listener info
  /ready: print server state, return 200 if LIVE, otherwise return 503
  /server_info: print server version/status information
  /stats: print server stats (?filter=REGEX, ?format=json)
  /stats/prometheus: print server stats in prometheus format
";

/// A query parameter's value, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// How long an admin connection may sit without sending a request head.
pub const ADMIN_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl Proxy {
    /// Serves the admin API on `listener` (bind it to 127.0.0.1), in the
    /// proxy's scope.
    pub fn serve_admin(&self, listener: TcpListener) {
        let p = self.clone();
        let scope = self.inner.scope.clone();
        self.inner.scope.spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        p.inner.io_failed(&e).await;
                        continue;
                    }
                };
                let p = p.clone();
                scope.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let p = p.clone();
                        async move { Ok::<_, Infallible>(p.admin(&req)) }
                    });
                    // An idle admin connection (no request head within
                    // ADMIN_IDLE) is closed: nothing waits without bound.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(ADMIN_IDLE)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }

    fn admin(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (body, ctype) = match req.uri().path() {
            "/config_dump" => (self.config_dump(), "application/json"),
            "/listeners" => {
                let mut s = String::new();
                for l in &self.tables().listeners {
                    let a = &l.address.socket_address;
                    let _ = writeln!(s, "{}::{}:{}", l.name, a.address, a.port_value);
                }
                (s, "text/plain")
            }
            "/clusters" if req.uri().query().is_some_and(|q| q.contains("format=json")) => {
                (self.clusters_json(), "application/json")
            }
            "/clusters" => (self.clusters_text(), "text/plain"),
            "/" | "/help" => (HELP.to_string(), "text/plain"),
            "/stats/prometheus" => (self.prometheus(), "text/plain; version=0.0.4"),
            "/stats" => {
                let mut stats = self.stats();
                // `?filter=REGEX` keeps the stats whose name it matches
                // (Envoy: a partial match, RE2 syntax).
                if let Some(f) = query_param(req.uri().query(), "filter") {
                    match regex::Regex::new(&f) {
                        Ok(re) => stats.retain(|(k, _)| re.is_match(k)),
                        Err(e) => {
                            let mut r = Response::new(Full::new(Bytes::from(format!(
                                "Invalid re2 regex: {e}\n"
                            ))));
                            *r.status_mut() = http::StatusCode::BAD_REQUEST;
                            return r;
                        }
                    }
                }
                if req.uri().query().is_some_and(|q| q.contains("format=json")) {
                    let v: Vec<serde_json::Value> = stats.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect();
                    (serde_json::json!({ "stats": v }).to_string(), "application/json")
                } else {
                    (stats.iter().map(|(k, v)| format!("{k}: {v}\n")).collect(), "text/plain")
                }
            }
            "/server_info" => (serde_json::json!({"state": "LIVE", "node": {"id": self.id()}, "command_line_options": {}}).to_string(), "application/json"),
            "/ready" => ("LIVE\n".into(), "text/plain"),
            _ => {
                let mut r = Response::new(Full::new(Bytes::from_static(b"invalid path\n")));
                *r.status_mut() = http::StatusCode::NOT_FOUND;
                return r;
            }
        };
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(ctype),
        );
        r
    }

    /// Envoy's `/config_dump`: snake_case field names, as Envoy's admin
    /// prints them; the version is the number of table sets received.
    pub fn config_dump(&self) -> String {
        meshsim_tables::display::envoy_json(&self.config_dump_value())
    }

    /// The config dump (with EDS and secrets) as Envoy's admin builds it.
    pub fn config_dump_value(&self) -> serde_json::Value {
        let tables = self.tables();
        let meta = meshsim_tables::envoy::DumpMeta {
            version_info: format!("meshsim/{}", self.config_version()),
            last_updated: humantime::format_rfc3339_millis(self.inner.clock.now()).to_string(),
            secrets: dump_secrets(self.inner.env.as_ref(), &tables),
        };
        meshsim_tables::envoy::config_dump(&tables, &meta)
    }

    /// Envoy's `/clusters?format=json` (what `istioctl proxy-config
    /// endpoints` reads).
    pub fn clusters_value(&self) -> serde_json::Value {
        let env = self.inner.env.clone();
        meshsim_tables::envoy::admin::clusters_status(&self.tables(), &|h| env.resolve(h))
    }

    pub fn clusters_json(&self) -> String {
        meshsim_tables::display::envoy_json(&self.clusters_value())
    }

    /// What `istioctl proxy-config` reads from this proxy.
    pub fn display_sources(&self) -> meshsim_tables::display::Sources {
        meshsim_tables::display::Sources {
            config_dump: self.config_dump_value(),
            clusters: self.clusters_value(),
            patches: self.tables().envoy_filter_patches.clone(),
        }
    }

    /// Envoy counter names: `cluster.<name>.<counter>`, listener totals.
    pub fn stats(&self) -> Vec<(String, u64)> {
        let s = &self.inner.server;
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let mut v = vec![
            (
                "http.inbound.downstream_rq_total".to_string(),
                g(&s.downstream_rq_total),
            ),
            (
                "listener.downstream_cx_total".to_string(),
                g(&s.downstream_cx_total),
            ),
            (
                "listener.downstream_cx_active".to_string(),
                g(&s.downstream_cx_active),
            ),
            (
                "listener.no_filter_chain_match".to_string(),
                g(&s.no_filter_chain_match),
            ),
            (
                "listener.downstream_pre_cx_timeout".to_string(),
                g(&s.downstream_pre_cx_timeout),
            ),
            (
                "http.downstream_cx_protocol_error".to_string(),
                g(&s.downstream_cx_protocol_error),
            ),
            ("downstream_cx_total".to_string(), g(&s.downstream_cx_total)),
        ];
        for (name, cs) in self.inner.stats.all() {
            for (k, val) in cs.snapshot() {
                v.push((format!("cluster.{name}.{k}"), val));
            }
        }
        v.sort();
        v
    }

    /// `/stats/prometheus`: Envoy's stats in Prometheus text (cluster
    /// stats labelled `envoy_cluster_name`, as Envoy tags them) and Istio's
    /// `istio_requests_total`.
    fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut typed = std::collections::BTreeSet::new();
        for (name, v) in self.stats() {
            let (metric, label) = match name.strip_prefix("cluster.") {
                Some(rest) => match rest.rsplit_once('.') {
                    Some((cluster, stat)) => (
                        format!("envoy_cluster_{stat}"),
                        format!("{{envoy_cluster_name=\"{cluster}\"}}"),
                    ),
                    None => continue,
                },
                None => (format!("envoy_{}", name.replace('.', "_")), String::new()),
            };
            let metric: String = metric
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if typed.insert(metric.clone()) {
                let kind = if metric.ends_with("_active") {
                    "gauge"
                } else {
                    "counter"
                };
                let _ = writeln!(out, "# TYPE {metric} {kind}");
            }
            let _ = writeln!(out, "{metric}{label} {v}");
        }
        self.inner.metrics.render(&mut out);
        out
    }

    fn clusters_text(&self) -> String {
        let snap = self.inner.snapshot.load();
        let mut s = String::new();
        for c in &snap.tables.clusters {
            let t = c.circuit_breakers.default_thresholds();
            let _ = writeln!(
                s,
                "{}::default_priority::max_connections::{}",
                c.name, t.max_connections
            );
            let _ = writeln!(
                s,
                "{}::default_priority::max_pending_requests::{}",
                c.name, t.max_pending_requests
            );
            let _ = writeln!(
                s,
                "{}::default_priority::max_requests::{}",
                c.name, t.max_requests
            );
            let _ = writeln!(
                s,
                "{}::default_priority::max_retries::{}",
                c.name, t.max_retries
            );
            if let Some(rt) = snap.cluster(&c.name) {
                for e in &rt.endpoints {
                    let _ = writeln!(
                        s,
                        "{}::{}:{}::health_flags::healthy",
                        c.name, e.host, e.port
                    );
                }
            }
        }
        s
    }
}

/// The SDS secrets `t` names, as `env` serves them: certificate chains
/// (Envoy redacts the key) and CA bundles — the config dump's secrets.
pub fn dump_secrets(
    env: &dyn crate::env::Environment,
    t: &meshsim_tables::ProxyTables,
) -> Vec<meshsim_tables::envoy::admin::DumpSecret> {
    use meshsim_tables::envoy::admin::{pem, secret_names, DumpSecret};
    let chain = |certs: &[rustls::pki_types::CertificateDer<'_>]| -> String {
        certs
            .iter()
            .map(|c| pem("CERTIFICATE", c.as_ref()))
            .collect()
    };
    secret_names(t)
        .into_iter()
        .filter_map(|name| {
            if DumpSecret::is_ca_name(&name) {
                let roots = env.trust_roots(Some(&name));
                (!roots.is_empty()).then(|| DumpSecret::Ca {
                    pem: chain(&roots),
                    name,
                })
            } else {
                let ck = env.certificate(&name)?;
                Some(DumpSecret::Certificate {
                    chain_pem: chain(&ck.chain),
                    name,
                })
            }
        })
        .collect()
}
