//! A client pod's HTTP proxy port (`curl -x http://127.0.0.1:PORT URL`):
//! a real client anywhere on the machine acts from inside the pod. An
//! absolute-form request (`GET http://reviews:9080/ HTTP/1.1`) or a
//! `CONNECT host:port` (HTTPS, any TCP) is resolved with the pod's DNS
//! (a Service name, a ServiceEntry host, an internet name, a pod IP) and
//! connected from the pod — through its sidecar's outbound capture, as
//! `meshsim curl --from` connects. The request is then passed on as the
//! application would send it (origin-form, without the proxy's own
//! headers); the connection stays with that destination.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::network::Network;

/// The longest request head the proxy port reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send its first request head.
const HEAD_WAIT: Duration = Duration::from_secs(60);

/// The pod a proxy port acts from.
#[derive(Debug, Clone)]
pub struct PodRef {
    pub ip: IpAddr,
    pub namespace: String,
}

/// Serves the proxy port for `pod` until the task is dropped; each
/// connection is a task of `tasks`' owner (aborted with it).
pub async fn serve(net: Arc<Network>, pod: PodRef, listener: TcpListener) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let (net, pod) = (net.clone(), pod.clone());
        conns.spawn(async move { one(&net, &pod, client).await });
    }
}

/// What the client asked for.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    connect: bool,
    host: String,
    port: u16,
    /// The head to send on (origin-form), for a plain request.
    head: Vec<u8>,
}

async fn one(net: &Network, pod: &PodRef, mut client: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return reply(&mut client, "431 Request Header Fields Too Large").await;
        }
        match tokio::time::timeout(HEAD_WAIT, client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let Some(t) = parse(&buf[..head_end]) else {
        return reply(&mut client, "400 Bad Request").await;
    };
    let Some(ip) = net.resolve_app(pod.ip, &pod.namespace, &t.host) else {
        // curl -x prints the proxy's answer: as a proxy that cannot
        // resolve the name answers.
        return reply(&mut client, "502 Bad Gateway").await;
    };
    let mut upstream = match net.connect_app(pod.ip, SocketAddr::new(ip, t.port)).await {
        Ok((s, _)) => s,
        Err(_) => return reply(&mut client, "502 Bad Gateway").await,
    };
    if t.connect {
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    } else if upstream.write_all(&t.head).await.is_err() {
        return;
    }
    if upstream.write_all(&buf[head_end..]).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

async fn reply(client: &mut TcpStream, status: &str) {
    let _ = client
        .write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
}

/// `CONNECT host:port` or an absolute-form request; `None` otherwise.
fn parse(head: &[u8]) -> Option<Target> {
    let text = std::str::from_utf8(head).ok()?;
    let (line, rest) = text.split_once("\r\n")?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_host_port(target, 443)?;
        return Some(Target {
            connect: true,
            host,
            port,
            head: Vec::new(),
        });
    }
    let after = target.strip_prefix("http://")?;
    let (authority, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    let (host, port) = split_host_port(authority, 80)?;
    let mut out = format!("{method} {path} {version}\r\n");
    for h in rest.split("\r\n").filter(|h| !h.is_empty()) {
        let name = h.split(':').next().unwrap_or("").trim();
        // The proxy's own headers stay with the proxy.
        if name.eq_ignore_ascii_case("proxy-connection")
            || name.eq_ignore_ascii_case("proxy-authorization")
        {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    Some(Target {
        connect: false,
        host,
        port,
        head: out.into_bytes(),
    })
}

fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, p) = rest.split_once(']')?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
    .filter(|(h, _)| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_becomes_origin_form_without_proxy_headers() {
        let t = parse(b"GET http://reviews.shop:9080/ratings?x=1 HTTP/1.1\r\nHost: reviews.shop:9080\r\nProxy-Connection: Keep-Alive\r\nUser-Agent: curl/8\r\n\r\n")
            .expect("parsed");
        assert_eq!(
            (t.host.as_str(), t.port, t.connect),
            ("reviews.shop", 9080, false)
        );
        assert_eq!(
            String::from_utf8(t.head).expect("utf8"),
            "GET /ratings?x=1 HTTP/1.1\r\nHost: reviews.shop:9080\r\nUser-Agent: curl/8\r\n\r\n"
        );
        let t = parse(b"GET http://10.1.2.3 HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n").expect("ip");
        assert_eq!((t.host.as_str(), t.port), ("10.1.2.3", 80));
    }

    #[test]
    fn connect_names_host_and_port() {
        let t = parse(b"CONNECT www.example.com:443 HTTP/1.1\r\nHost: www.example.com:443\r\n\r\n")
            .expect("connect");
        assert_eq!(
            (t.host.as_str(), t.port, t.connect),
            ("www.example.com", 443, true)
        );
        assert!(parse(b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n").is_none());
    }
}
