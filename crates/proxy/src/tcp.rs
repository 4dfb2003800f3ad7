//! The TCP proxy filter: one upstream connection per downstream
//! connection, bytes copied both ways, one access-log line at close
//! (`"- - -" 0 ...`). Also the network RBAC filter's deny-all form.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use meshsim_tables::weighted::pick_weighted;
use meshsim_tables::TcpProxy;
use tokio::io::AsyncWriteExt;

use crate::accesslog::{Flag, LogEntry};
use crate::io::BoxIo;
use crate::listener::ConnInfo;
use crate::upstream::{self, UpstreamError};
use crate::Inner;

pub(crate) async fn proxy(inner: Arc<Inner>, mut down: BoxIo, tp: TcpProxy, info: ConnInfo) {
    let start = SystemTime::now();
    let started = Instant::now();
    let cluster_name = match (&tp.cluster, &tp.weighted_clusters) {
        (Some(c), _) => c.clone(),
        (None, Some(w)) => pick_weighted(w, inner.random())
            .map(|i| w.clusters[i].name.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut entry = LogEntry {
        start: Some(start),
        upstream_cluster: Some(cluster_name.clone()),
        downstream_local: Some(info.dst),
        downstream_remote: Some(info.src),
        requested_server_name: info.sni.clone(),
        ..Default::default()
    };
    let snap = inner.snapshot.load_full();
    let env = inner.env.as_ref();
    let connected = match snap.cluster(&cluster_name) {
        None => Err(UpstreamError::NoHealthyUpstream),
        Some(c) if upstream::is_original_dst(&c.config) => {
            entry.upstream_host = Some(info.dst.to_string());
            match c.original_dst_tls(env) {
                Ok(tls) => {
                    upstream::connect(
                        env,
                        &info.dst.ip().to_string(),
                        info.dst.port(),
                        tls.as_ref(),
                        None,
                    )
                    .await
                }
                Err(e) => Err(UpstreamError::TlsFailure(e)),
            }
        }
        Some(c) => match c.pick() {
            None => Err(UpstreamError::NoHealthyUpstream),
            Some(i) => {
                let ep = &c.endpoints[i];
                entry.upstream_host = Some(format!("{}:{}", ep.host, ep.port));
                upstream::connect(env, &ep.host, ep.port, ep.tls.as_ref(), None).await
            }
        },
    };
    match connected {
        Ok((mut up, local)) => {
            entry.upstream_local = Some(local.to_string());
            match tokio::io::copy_bidirectional(&mut down, &mut up).await {
                Ok((rx, tx)) => {
                    entry.bytes_received = rx;
                    entry.bytes_sent = tx;
                }
                Err(_) => entry.flags.push(Flag::UpstreamConnectionTermination),
            }
        }
        Err(e) => {
            entry.flags.push(e.flag());
            entry.transport_failure_reason = e.transport_failure_reason();
            if matches!(e, UpstreamError::NoHealthyUpstream) {
                entry.upstream_host = None;
            }
            let _ = down.shutdown().await;
        }
    }
    entry.duration = started.elapsed();
    inner.logger.load().log(&entry);
}

pub(crate) fn log_rbac_denied(inner: &Inner, info: &ConnInfo) {
    let e = LogEntry {
        start: Some(SystemTime::now()),
        termination_details: Some("rbac_access_denied_matched_policy[none]".into()),
        downstream_local: Some(info.dst),
        downstream_remote: Some(info.src),
        requested_server_name: info.sni.clone(),
        ..Default::default()
    };
    inner.logger.load().log(&e);
}
