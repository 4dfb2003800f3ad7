//! Istio's Bookinfo sample as its images behave (samples/bookinfo/src), on
//! Bookinfo's own paths; every other path of these pods stays the echo
//! app. Calls between the services go out through the pod's sidecar, with
//! the headers Bookinfo propagates, and with the apps' own client
//! timeouts — the ones istio.io's tasks depend on:
//!
//! * productpage (`/productpage`, `/login`, `/logout`): calls details
//!   (`/details/0`, 3 s) and reviews (`/reviews/0`, 3 s, tried twice —
//!   productpage.py's "bug introduced explicitly for illustration in fault
//!   injection task"), renders the page; the logged-in user (cookie
//!   `session`) is sent on as `end-user`;
//! * reviews v1 (no stars), v2 (black), v3 (red): `/reviews/{id}`, v2/v3
//!   call ratings `/ratings/{id}` with a 10 s timeout (2.5 s in v3 of
//!   newer images is not modelled);
//! * details `/details/{id}`, ratings `/ratings/{id}`: JSON.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::network::Network;

/// Which Bookinfo service a pod's image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Productpage,
    Details,
    Ratings,
    /// `stars`: None (v1), Some("black") (v2), Some("red") (v3).
    Reviews(Option<&'static str>),
}

/// The Bookinfo role of an image (`istio/examples-bookinfo-reviews-v2`).
pub fn role(image: &str) -> Option<Role> {
    let name = image.rsplit('/').next()?.split(':').next()?;
    let rest = name.strip_prefix("examples-bookinfo-")?;
    Some(match rest {
        r if r.starts_with("productpage") => Role::Productpage,
        r if r.starts_with("details") => Role::Details,
        r if r.starts_with("ratings") => Role::Ratings,
        "reviews-v2" => Role::Reviews(Some("black")),
        "reviews-v3" => Role::Reviews(Some("red")),
        r if r.starts_with("reviews") => Role::Reviews(None),
        _ => return None,
    })
}

/// How a pod's app calls other services: from its IP, through its sidecar.
#[derive(Clone)]
pub struct Outbound {
    pub net: Arc<Network>,
    pub ip: IpAddr,
    pub namespace: String,
}

/// Headers Bookinfo forwards on every call (productpage.py
/// `getForwardHeaders`, reviews' `propagate_headers`).
const FORWARD: &[&str] = &[
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "end-user",
    "user-agent",
];

type Reply = Response<Full<Bytes>>;

fn text(status: StatusCode, ctype: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn json(body: String) -> Reply {
    text(StatusCode::OK, "application/json", body)
}

/// The id in `/PREFIX/{id}`.
fn id_in(path: &str, prefix: &str) -> Option<u32> {
    path.strip_prefix(prefix)?.parse().ok()
}

/// Bookinfo's answer to `method path`, when it is one of the role's paths.
pub async fn handle(
    role: Role,
    out: Option<&Outbound>,
    pod: &str,
    method: &http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Reply> {
    let path = path_and_query.split('?').next().unwrap_or("");
    match role {
        Role::Details => id_in(path, "/details/").map(|id| json(details(id))),
        Role::Ratings => id_in(path, "/ratings/").map(|id| {
            json(format!(
                "{{\"id\":{id},\"ratings\":{{\"Reviewer1\":5,\"Reviewer2\":4}}}}"
            ))
        }),
        Role::Reviews(stars) => {
            let id = id_in(path, "/reviews/")?;
            Some(json(reviews(id, stars, out, pod, headers).await))
        }
        Role::Productpage => match (method.as_str(), path) {
            ("GET", "/productpage") => Some(productpage(out, headers).await),
            ("POST", "/login") => Some(login(body)),
            ("GET", "/logout") => Some(redirect("session=; Max-Age=0; Path=/")),
            _ => None,
        },
    }
}

fn details(id: u32) -> String {
    format!("{{\"id\":{id},\"author\":\"William Shakespeare\",\"year\":1595,\"type\":\"paperback\",\"pages\":200,\"publisher\":\"PublisherA\",\"language\":\"English\",\"ISBN-10\":\"1234567890\",\"ISBN-13\":\"123-1234567890\"}}")
}

async fn reviews(
    id: u32,
    stars: Option<&'static str>,
    out: Option<&Outbound>,
    pod: &str,
    headers: &HeaderMap,
) -> String {
    let rating = |n: u32| match stars {
        None => String::new(),
        Some(color) => format!(",\"rating\":{{\"stars\":{n},\"color\":\"{color}\"}}"),
    };
    let (r1, r2) = match (stars, out) {
        (None, _) => (rating(0), rating(0)),
        (Some(_), Some(out)) => {
            let got = call(
                out,
                "ratings",
                9080,
                &format!("/ratings/{id}"),
                headers,
                Duration::from_secs(10),
            )
            .await;
            match got {
                Some((200, b)) => (rating(star(&b, "Reviewer1")), rating(star(&b, "Reviewer2"))),
                _ => {
                    let e = ",\"rating\":{\"error\":\"Ratings service is currently unavailable\"}"
                        .to_string();
                    (e.clone(), e)
                }
            }
        }
        (Some(_), None) => (rating(0), rating(0)),
    };
    format!("{{\"id\":\"{id}\",\"podname\":\"{pod}\",\"clustername\":\"null\",\"reviews\":[{{\"reviewer\":\"Reviewer1\",\"text\":\"An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!\"{r1}}},{{\"reviewer\":\"Reviewer2\",\"text\":\"Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.\"{r2}}}]}}")
}

/// `"Reviewer1":5` in ratings' JSON.
fn star(body: &str, who: &str) -> u32 {
    body.split(&format!("\"{who}\":"))
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The user logged in with `session=NAME` (Bookinfo keeps it in Flask's
/// session; here the cookie holds the name).
fn user(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("session=").map(str::to_string))
        .filter(|u| !u.is_empty())
}

fn login(body: &[u8]) -> Reply {
    let form = String::from_utf8_lossy(body);
    let user = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("username="))
        .unwrap_or("")
        .replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "",
        );
    redirect(&format!("session={user}; Path=/"))
}

fn redirect(cookie: &str) -> Reply {
    let mut r = text(StatusCode::FOUND, "text/html", String::new());
    r.headers_mut().insert(
        http::header::LOCATION,
        HeaderValue::from_static("/productpage"),
    );
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(http::header::SET_COOKIE, v);
    }
    r
}

async fn productpage(out: Option<&Outbound>, incoming: &HeaderMap) -> Reply {
    let mut headers = incoming.clone();
    let user = user(incoming);
    if let Some(u) = user.as_deref().and_then(|u| HeaderValue::from_str(u).ok()) {
        headers.insert("end-user", u);
    }
    let (details, reviews) = match out {
        Some(out) => {
            let d = call(
                out,
                "details",
                9080,
                "/details/0",
                &headers,
                Duration::from_secs(3),
            );
            let r = async {
                // productpage.py: two tries of 3 s each.
                let mut last = None;
                for _ in 0..2 {
                    last = call(
                        out,
                        "reviews",
                        9080,
                        "/reviews/0",
                        &headers,
                        Duration::from_secs(3),
                    )
                    .await;
                    if matches!(last, Some((200, _))) {
                        break;
                    }
                }
                last
            };
            tokio::join!(d, r)
        }
        None => (None, None),
    };
    let mut html = String::from("<!DOCTYPE html><html><head><title>Simple Bookstore App</title><style>body{font-family:sans-serif;margin:2em}.star{font-size:1.6em}.star.black{color:#000}.star.red{color:#d00}pre{white-space:pre-wrap}</style></head><body>\n");
    match user.as_deref() {
        Some(u) => {
            let _ = writeln!(html, "<p id=\"user\">{u} <a href=\"/logout\">sign out</a></p>");
        }
        None => html.push_str("<form id=\"login\" method=\"post\" action=\"/login\"><input name=\"username\"><input name=\"passwd\" type=\"password\"><button type=\"submit\">Sign in</button></form>\n"),
    }
    html.push_str("<h3>The Comedy of Errors</h3>\n<p>Summary: Wikipedia Summary: The Comedy of Errors is one of William Shakespeare's early plays.</p>\n");
    match details {
        Some((200, d)) => {
            let _ = writeln!(html, "<h4>Book Details</h4><pre id=\"details\">{d}</pre>");
        }
        _ => html.push_str("<h4 id=\"details-error\">Error fetching product details!</h4><p>Sorry, product details are currently unavailable for this book.</p>\n"),
    }
    match reviews {
        Some((200, r)) => {
            html.push_str("<h4>Book Reviews</h4>\n");
            for part in r.split("{\"reviewer\":").skip(1) {
                let who = part.split('"').nth(1).unwrap_or("");
                let _ = write!(html, "<blockquote><small>{who}</small>");
                if part.contains("\"error\"") {
                    html.push_str("<p class=\"ratings-error\">Ratings service is currently unavailable</p>");
                } else if let Some(color) = part.split("\"color\":\"").nth(1).and_then(|c| c.split('"').next()) {
                    let n = star(part, "stars");
                    let _ = write!(
                        html,
                        "<p class=\"stars\" data-color=\"{color}\">{}</p>",
                        format!("<span class=\"star {color}\">★</span>").repeat(n as usize)
                    );
                }
                html.push_str("</blockquote>\n");
            }
            let pod = r.split("\"podname\":\"").nth(1).and_then(|p| p.split('"').next()).unwrap_or("");
            let _ = writeln!(html, "<dl><dt>Reviews served by:</dt><dd><u>{pod}</u></dd></dl>");
        }
        _ => html.push_str("<h4 id=\"reviews-error\">Error fetching product reviews!</h4><p>Sorry, product reviews are currently unavailable for this book.</p>\n"),
    }
    html.push_str("</body></html>\n");
    text(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// GET `http://NAME:PORT/PATH` from the pod (its DNS, its sidecar), with
/// Bookinfo's forwarded headers, within `timeout`: status and body.
pub(crate) async fn call(
    out: &Outbound,
    name: &str,
    port: u16,
    path: &str,
    incoming: &HeaderMap,
    timeout: Duration,
) -> Option<(u16, String)> {
    let go = async {
        let ip = out.net.resolve_app(out.ip, &out.namespace, name)?;
        let (stream, _) = out
            .net
            .connect_app(out.ip, SocketAddr::new(ip, port))
            .await
            .ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        let conn = tokio::spawn(conn);
        let mut req = Request::get(path)
            .header(http::header::HOST, format!("{name}:{port}"))
            .body(Full::new(Bytes::new()))
            .ok()?;
        for h in FORWARD {
            if let Some(v) = incoming.get(*h) {
                req.headers_mut().insert(*h, v.clone());
            }
        }
        let resp = send.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        conn.abort();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, go).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_sample_images() {
        assert_eq!(
            role("docker.io/istio/examples-bookinfo-reviews-v3:1.20.1"),
            Some(Role::Reviews(Some("red")))
        );
        assert_eq!(
            role("istio/examples-bookinfo-productpage-v1"),
            Some(Role::Productpage)
        );
        assert_eq!(role("docker.io/istio/examples-helloworld-v1"), None);
        assert_eq!(star("{\"Reviewer1\":5,\"Reviewer2\":4}", "Reviewer2"), 4);
    }
}
