//! A websocket upgrade after the upstream's `101`: the client's and the
//! upstream's connections joined byte for byte, and the request logged
//! when the tunnel closes (as Envoy logs upgraded streams at their end),
//! with the bytes each way — and, when the client closed first, Envoy's
//! `DC downstream_remote_disconnect` (what Envoy 1.36 logs).

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::accesslog::{AccessLogger, Flag, LogEntry};
use crate::Inner;

pub(super) fn spawn(
    inner: &Arc<Inner>,
    down: OnUpgrade,
    up: OnUpgrade,
    mut entry: LogEntry,
    logger: Arc<AccessLogger>,
    started: tokio::time::Instant,
) {
    inner.scope.spawn(async move {
        if let (Ok(d), Ok(u)) = tokio::join!(down, up) {
            let (mut dr, mut dw) = tokio::io::split(TokioIo::new(d));
            let (mut ur, mut uw) = tokio::io::split(TokioIo::new(u));
            let from_client = async {
                let n = tokio::io::copy(&mut dr, &mut uw).await.unwrap_or(0);
                let _ = uw.shutdown().await;
                n
            };
            let to_client = async {
                let n = tokio::io::copy(&mut ur, &mut dw).await.unwrap_or(0);
                let _ = dw.shutdown().await;
                n
            };
            tokio::pin!(from_client, to_client);
            let (rx, tx, client_first) = tokio::select! {
                rx = &mut from_client => (rx, to_client.await, true),
                tx = &mut to_client => (from_client.await, tx, false),
            };
            entry.bytes_received += rx;
            entry.bytes_sent += tx;
            if client_first {
                entry.flags.push(Flag::DownstreamConnectionTermination);
                entry.details = Some("downstream_remote_disconnect".into());
            }
        }
        entry.duration = started.elapsed();
        logger.log(&entry);
    });
}
