//! The HTTP/1 codec's verdict on a request head, as Envoy's (balsa) codec
//! gives it before the connection manager sees a request
//! (source/common/http/http1/codec_impl.cc, balsa_parser.cc; every rule
//! here was checked against Envoy 1.36 by the differential suite):
//!
//! * the head (request line to blank line) over `max_request_headers_kb`
//!   (60 KiB) is `431 http1.headers_too_large`; more than
//!   `max_request_headers_count` (100) headers `431 http1.too_many_headers`;
//! * an unparseable request line or header line is `400 http1.codec_error`,
//!   a control character in a value `400 http1.invalid_characters`;
//! * `HTTP/1.1` is served, `HTTP/1.0` only with `accept_http_10`, any other
//!   `HTTP/x.y` is `426 low_version`;
//! * two `content-length`s or a non-numeric one are `400`, with chunked
//!   `400 http1.content_length_and_chunked_not_allowed`, another transfer
//!   coding `501 http1.invalid_transfer_encoding`;
//! * a `host` that is not a valid authority is `400 http.invalid_authority`;
//! * obsolete line folding is accepted and unfolded to one space; bare LF
//!   line ends are accepted; runs of spaces in the request line too.
//!
//! Header lines are tokenised by `httparse` once the folding is undone.

use super::reply::CodecReject;
use crate::sniff::h2_preface;
#[cfg(test)]
use crate::sniff::H2_PREFACE;

/// The codec's limits, from the HTTP connection manager.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max_request_headers_kb` × 1024 (Envoy default 60 KiB).
    pub max_bytes: usize,
    /// `common_http_protocol_options.max_headers_count` (default 100).
    pub max_count: usize,
    pub accept_http_10: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 60 * 1024,
            max_count: 100,
            accept_http_10: false,
        }
    }
}

/// What the codec makes of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Nothing wrong yet, and not a whole head.
    Incomplete,
    /// The HTTP/2 connection preface (prior knowledge).
    H2Preface,
    /// A head the codec accepts: its length; the bytes to hand on in its
    /// place when hyper would not take it as sent (folding, runs of
    /// spaces, bytes hyper's URI parser refuses, a fragment); and the
    /// request target as sent.
    Accepted {
        len: usize,
        rewritten: Option<Vec<u8>>,
        target: String,
    },
    Rejected(CodecReject),
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The request line's verdict (without the version rule, applied last).
enum Line<'a> {
    Ok {
        method: &'a [u8],
        target: &'a [u8],
        version: &'a [u8],
    },
    Bad,
}

/// Bytes Envoy takes in a target that hyper's URI parser refuses (or, for
/// `#`, drops): sent on percent-encoded; the target as sent is kept for
/// the connection manager.
const HYPER_REFUSES: &[u8] = b"\"#<>`{|}^";

/// The request line hyper is handed: single spaces, CRLF, and the bytes
/// it refuses escaped.
fn hyper_line(method: &[u8], target: &[u8], version: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(method.len() + target.len() + 16);
    out.extend_from_slice(method);
    out.push(b' ');
    for b in target {
        if HYPER_REFUSES.contains(b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(*b);
        }
    }
    out.push(b' ');
    out.extend_from_slice(version);
    out.extend_from_slice(b"\r\n");
    out
}

fn request_line(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Line::Bad;
    }
    let mut parts = line.split(|b| *b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Line::Bad;
    };
    if !method.iter().all(|b| is_tchar(*b)) {
        return Line::Bad;
    }
    // Only visible ASCII in a request target (balsa rejects raw UTF-8).
    let target_ok = target.iter().all(|b| (0x21..=0x7e).contains(b))
        && (target.starts_with(b"/")
            || target == b"*"
            || target.windows(3).any(|w| w == b"://")
            || method == b"CONNECT");
    let version_ok = version.len() == 8
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
        && version[6] == b'.'
        && version[7].is_ascii_digit();
    if !target_ok || !version_ok {
        return Line::Bad;
    }
    Line::Ok {
        method,
        target,
        version,
    }
}

/// Where the head ends (just past its blank line), CRLF or bare LF.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = buf[i..].iter().position(|b| *b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            Some(b'\r') | None => return None,
            _ => i = nl + 1,
        }
    }
    None
}

/// Header lines with obsolete folding undone (a continuation line joins
/// the previous one with a single space), ending with a blank line.
fn unfold(block: &[u8]) -> Option<Vec<u8>> {
    let folded = block
        .windows(2)
        .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'));
    if !folded {
        return None;
    }
    let mut out = Vec::with_capacity(block.len());
    for line in block.split_inclusive(|b| *b == b'\n') {
        if matches!(line.first(), Some(b' ' | b'\t')) && !out.is_empty() {
            // Drop the previous line end, join with one space.
            while matches!(out.last(), Some(b'\n' | b'\r')) {
                out.pop();
            }
            while matches!(out.last(), Some(b' ' | b'\t')) {
                out.pop();
            }
            out.push(b' ');
            out.extend_from_slice(line.trim_ascii_start());
        } else {
            out.extend_from_slice(line);
        }
    }
    Some(out)
}

fn named<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a httparse::Header<'a>> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
}

/// RFC 3986 authority characters (`HeaderUtility::authorityIsValid`).
fn authority_ok(v: &[u8]) -> bool {
    v.iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@[]%".contains(b))
}

/// Judges `buf`, the first bytes of a plaintext HTTP/1 connection.
pub fn check(buf: &[u8], limits: &Limits) -> Head {
    match h2_preface(buf) {
        Some(true) => return Head::H2Preface,
        Some(false) => return Head::Incomplete,
        None => {}
    }
    // Bytes that cannot start a method fail at once (no waiting for a line).
    let method_so_far = buf.iter().take_while(|b| **b != b' ');
    if method_so_far.clone().any(|b| !is_tchar(*b)) {
        return Head::Rejected(CodecReject::Malformed);
    }
    let too_large = |len: usize| len > limits.max_bytes;
    let Some(line_end) = buf.iter().position(|b| *b == b'\n') else {
        return if too_large(buf.len()) {
            Head::Rejected(CodecReject::HeadersTooLarge)
        } else {
            Head::Incomplete
        };
    };
    let Line::Ok {
        method,
        target,
        version,
    } = request_line(&buf[..line_end])
    else {
        return Head::Rejected(CodecReject::Malformed);
    };
    let line = hyper_line(method, target, version);
    let line_changed = buf[..=line_end] != line[..];
    let target = String::from_utf8_lossy(target).into_owned();
    let version = version.to_vec();
    let headers_from = line_end + 1;
    // A head that is only a request line ends at the line's own blank line.
    let end = match buf.get(headers_from) {
        Some(b'\n') => Some(headers_from + 1),
        Some(b'\r') if buf.get(headers_from + 1) == Some(&b'\n') => Some(headers_from + 2),
        _ => head_end(buf, headers_from),
    };
    let Some(end) = end else {
        return if too_large(buf.len()) {
            Head::Rejected(CodecReject::HeadersTooLarge)
        } else {
            Head::Incomplete
        };
    };
    if too_large(end) {
        return Head::Rejected(CodecReject::HeadersTooLarge);
    }
    let block = &buf[headers_from..end];
    let unfolded = unfold(block);
    let lines = unfolded.as_deref().unwrap_or(block);
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_count];
    let headers = match httparse::parse_headers(lines, &mut slots) {
        Ok(httparse::Status::Complete((_, h))) => h,
        Ok(httparse::Status::Partial) => return Head::Rejected(CodecReject::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Head::Rejected(CodecReject::TooManyHeaders),
        Err(httparse::Error::HeaderValue) => return Head::Rejected(CodecReject::InvalidCharacters),
        Err(_) => return Head::Rejected(CodecReject::Malformed),
    };
    let lengths: Vec<&[u8]> = named(headers, "content-length").map(|h| h.value).collect();
    if lengths.len() > 1
        || lengths
            .iter()
            .any(|v| v.trim_ascii().is_empty() || !v.trim_ascii().iter().all(u8::is_ascii_digit))
    {
        return Head::Rejected(CodecReject::Malformed);
    }
    if let Some(te) = named(headers, "transfer-encoding").next() {
        if !te.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Head::Rejected(CodecReject::InvalidTransferEncoding);
        }
        if !lengths.is_empty() {
            return Head::Rejected(CodecReject::ContentLengthAndChunked);
        }
    }
    if named(headers, "host").any(|h| !authority_ok(h.value.trim_ascii())) {
        return Head::Rejected(CodecReject::InvalidAuthority);
    }
    match version.as_slice() {
        b"HTTP/1.1" => {}
        b"HTTP/1.0" if limits.accept_http_10 => {}
        _ => return Head::Rejected(CodecReject::LowVersion),
    }
    let rewritten = (line_changed || unfolded.is_some()).then(|| {
        let mut whole = line;
        whole.extend_from_slice(unfolded.as_deref().unwrap_or(block));
        whole
    });
    Head::Accepted {
        len: end,
        rewritten,
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CodecReject::*;

    fn verdict(head: &str) -> Head {
        check(head.as_bytes(), &Limits::default())
    }

    fn rejected(head: &str) -> Option<CodecReject> {
        match verdict(head) {
            Head::Rejected(r) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn request_lines() {
        assert!(matches!(
            verdict("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"),
            Head::Accepted {
                len: 28,
                rewritten: None,
                ..
            }
        ));
        assert!(matches!(
            verdict("GET  /a   HTTP/1.1\r\nHost: h\r\n\r\n"),
            Head::Accepted { .. }
        ));
        assert!(matches!(
            verdict("GET /a HTTP/1.1\nHost: h\n\n"),
            Head::Accepted { .. }
        ));
        assert!(matches!(
            verdict("OPTIONS * HTTP/1.1\r\n\r\n"),
            Head::Accepted { .. }
        ));
        assert_eq!(verdict("GET /a HTTP/1.1\r\nHost: h\r\n"), Head::Incomplete);
        assert_eq!(rejected("G@T /a HTTP/1.1\r\n\r\n"), Some(Malformed));
        assert_eq!(rejected("GET a HTTP/1.1\r\n\r\n"), Some(Malformed));
        assert_eq!(rejected("GET /\u{e9} HTTP/1.1\r\n\r\n"), Some(Malformed));
        assert_eq!(rejected("GET /a http/1.1\r\n\r\n"), Some(Malformed));
        assert_eq!(rejected("GET /a HTTP/1.1 x\r\n\r\n"), Some(Malformed));
        assert_eq!(rejected("\x16\x03\x01"), Some(Malformed));
        for v in ["0.9", "1.2", "2.0", "1.0"] {
            assert_eq!(
                rejected(&format!("GET / HTTP/{v}\r\n\r\n")),
                Some(LowVersion),
                "{v}"
            );
        }
        let ten = Limits {
            accept_http_10: true,
            ..Limits::default()
        };
        assert!(matches!(
            check(b"GET / HTTP/1.0\r\n\r\n", &ten),
            Head::Accepted { .. }
        ));
        assert_eq!(check(H2_PREFACE, &ten), Head::H2Preface);
        assert_eq!(check(&H2_PREFACE[..5], &ten), Head::Incomplete);
    }

    #[test]
    fn header_lines() {
        let with = |h: &str| format!("GET / HTTP/1.1\r\nHost: h\r\n{h}\r\n\r\n");
        assert_eq!(rejected(&with("Bad Name: v")), Some(Malformed));
        assert_eq!(rejected(&with("X-Sp : v")), Some(Malformed));
        assert_eq!(rejected(&with("NoColon")), Some(Malformed));
        assert_eq!(rejected(&with(": v")), Some(Malformed));
        assert_eq!(rejected(&with("X-C: a\x01b")), Some(InvalidCharacters));
        assert_eq!(rejected(&with("X-C: a\x7fb")), Some(InvalidCharacters));
        assert_eq!(rejected(&with("X-Tab: a\tb")), None);
        assert_eq!(rejected(&with("X_Under: v")), None);
        assert_eq!(rejected(&with("Content-Length: x")), Some(Malformed));
        assert_eq!(
            rejected(&with("Content-Length: 0\r\nContent-Length: 0")),
            Some(Malformed)
        );
        assert_eq!(
            rejected(&with("Content-Length: 3\r\nTransfer-Encoding: chunked")),
            Some(ContentLengthAndChunked)
        );
        assert_eq!(
            rejected(&with("Transfer-Encoding: gzip")),
            Some(InvalidTransferEncoding)
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n"),
            Some(InvalidAuthority)
        );
    }

    #[test]
    fn folding_is_undone() {
        let Head::Accepted {
            rewritten: Some(u),
            len,
            ..
        } = verdict("GET / HTTP/1.1\r\nX-F: a\r\n  b\r\nHost: h\r\n\r\nBODY")
        else {
            panic!("folded head accepted");
        };
        assert_eq!(len, 40);
        assert_eq!(
            String::from_utf8_lossy(&u),
            "GET / HTTP/1.1\r\nX-F: a b\r\nHost: h\r\n\r\n"
        );
    }

    #[test]
    fn what_hyper_would_refuse_is_rewritten() {
        let Head::Accepted {
            rewritten: Some(r),
            target,
            ..
        } = verdict("GET  /a\"b#f   HTTP/1.1\nHost: h\n\n")
        else {
            panic!("accepted");
        };
        assert_eq!(target, "/a\"b#f");
        assert_eq!(
            String::from_utf8_lossy(&r),
            "GET /a%22b%23f HTTP/1.1\r\nHost: h\n\n"
        );
    }

    /// The limits count the whole head, request line to blank line.
    #[test]
    fn limits() {
        let head = |n: usize| {
            format!(
                "GET /api HTTP/1.1\r\nHost: app.example\r\nX-B: {}\r\n\r\n",
                "a".repeat(n)
            )
        };
        let base = head(0).len();
        assert!(matches!(
            verdict(&head(61440 - base)),
            Head::Accepted { .. }
        ));
        assert_eq!(rejected(&head(61441 - base)), Some(HeadersTooLarge));
        // Too large is known before the head ends.
        assert_eq!(
            rejected(&format!("GET /{} HTTP/1.1", "p".repeat(70000))),
            Some(HeadersTooLarge)
        );
        let many = |n: usize| {
            let h: String = (0..n).map(|i| format!("X-{i}: v\r\n")).collect();
            format!("GET / HTTP/1.1\r\n{h}\r\n")
        };
        assert!(matches!(verdict(&many(100)), Head::Accepted { .. }));
        assert_eq!(rejected(&many(101)), Some(TooManyHeaders));
    }
}
