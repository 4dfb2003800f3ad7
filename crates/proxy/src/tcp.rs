//! The TCP proxy filter: one upstream connection per downstream
//! connection (through the same connect path as HTTP), bytes copied both
//! ways, one access-log line at close (`"- - -" 0 ...`). Also the network
//! RBAC filter's deny.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use meshsim_tables::weighted::pick_weighted;
use meshsim_tables::TcpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::accesslog::{Flag, LogEntry};
use crate::io::BoxIo;
use crate::listener::ConnInfo;
use crate::upstream::{self, Carries, UpstreamError};
use crate::Inner;

pub(crate) async fn proxy(
    inner: Arc<Inner>,
    mut down: BoxIo,
    tp: TcpProxy,
    info: ConnInfo,
    unread: Option<OwnedFd>,
) {
    let started = tokio::time::Instant::now();
    let cluster_name = match (&tp.cluster, &tp.weighted_clusters) {
        (Some(c), _) => c.clone(),
        (None, Some(w)) => pick_weighted(w, inner.random())
            .map(|i| w.clusters[i].name.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut entry = LogEntry {
        start: Some(inner.clock.now()),
        upstream_cluster: Some(cluster_name.clone()),
        downstream_local: Some(info.dst),
        downstream_remote: Some(info.src),
        requested_server_name: info.sni.clone(),
        ..Default::default()
    };
    let snap = inner.snapshot.load_full();
    let connected = match snap.cluster(&cluster_name) {
        None => Err(UpstreamError::NoHealthyUpstream),
        Some(c) => match c.choose(info.dst).map(|h| h.resolved(inner.env.as_ref())) {
            Err(e) => Err(e),
            Ok(host) => {
                entry.upstream_host = Some(host.label());
                let r = upstream::connect(&inner, c, &host, Carries::Bytes).await;
                // The TCP proxy tells outlier detection only whether it
                // could connect (tcp_proxy.cc; a success resets the run).
                if let Some(i) = host.endpoint {
                    c.report(
                        i,
                        match &r {
                            Ok(_) => upstream::Report::Status(200),
                            Err(_) => upstream::Report::LocalFailure,
                        },
                    );
                }
                r
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
            match unread {
                // Envoy closes with the client's bytes unread: a reset.
                Some(fd) => {
                    let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
                    drop(down);
                }
                None => {
                    let _ = down.shutdown().await;
                }
            }
        }
    }
    entry.duration = started.elapsed();
    snap.logger.log(&entry);
}

/// Envoy's network RBAC filter decides on the first data, then closes
/// without a response and logs the policy that denied.
pub(crate) async fn rbac_deny(inner: &Inner, mut io: BoxIo, info: &ConnInfo) {
    let mut first = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), io.read(&mut first)).await;
    let _ = io.shutdown().await;
    let e = LogEntry {
        start: Some(inner.clock.now()),
        termination_details: Some("rbac_access_denied_matched_policy[none]".into()),
        downstream_local: Some(info.dst),
        downstream_remote: Some(info.src),
        requested_server_name: info.sni.clone(),
        ..Default::default()
    };
    inner.snapshot.load().logger.log(&e);
}
