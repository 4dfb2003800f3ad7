//! The HTTP connection manager's path normalisation
//! (conn_manager_utility.cc `maybeNormalizePath`, path_utility.cc), in
//! Envoy's order: escaped slashes (`path_with_escaped_slashes_action`),
//! then `normalize_path` (Chromium's `url::CanonicalizePath`, as Envoy
//! links it), then `merge_slashes`. Only the path is touched, never the
//! query. Checked against Envoy 1.36 by the differential suite.

use meshsim_tables::EscapedSlashesAction;

/// What normalisation made of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    Path(String),
    /// `400 path_normalization_failed` (a fragment, an escaped NUL, or an
    /// escaped slash with `REJECT_REQUEST`).
    Rejected,
    /// `UNESCAPE_AND_REDIRECT`: a redirect to the unescaped path.
    Redirect(String),
}

/// How one byte of a path canonicalises (url_canon_path.cc
/// `kPathCharLookup`, the table Envoy's Chromium URL library has).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Pass,
    /// Written as `%XX`.
    Escape,
    /// An escaped form (`%41`) is written as the character.
    Unescape,
    /// Not allowed even escaped (NUL).
    Invalid,
}

fn class(b: u8) -> Class {
    match b {
        0 => Class::Invalid,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'~' => Class::Unescape,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'/' | b':' | b';'
        | b'=' | b'@' | b'[' | b']' | b'.' => Class::Pass,
        _ => Class::Escape,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `%2e` / `%2E` or `.` at `i`: the length of that dot, if any.
fn dot_at(p: &[u8], i: usize) -> Option<usize> {
    match p.get(i) {
        Some(b'.') => Some(1),
        Some(b'%') if p.get(i + 1) == Some(&b'2') && matches!(p.get(i + 2), Some(b'e' | b'E')) => {
            Some(3)
        }
        _ => None,
    }
}

/// The segment starting at `i` (up to `/` or the end) is `.` or `..`
/// (escaped or not): 1 or 2, and its length.
fn dot_segment(p: &[u8], i: usize) -> Option<(usize, usize)> {
    let first = dot_at(p, i)?;
    let at_end = |j: usize| j >= p.len() || p[j] == b'/' || p[j] == b'\\';
    if at_end(i + first) {
        return Some((1, first));
    }
    let second = dot_at(p, i + first)?;
    at_end(i + first + second).then_some((2, first + second))
}

/// `url::CanonicalizePath`: backslashes are slashes, dot segments
/// resolved, unreserved escapes decoded, other unsafe bytes escaped
/// (upper-case hex; existing escapes keep their case). `None` on an
/// escaped NUL.
fn canonicalize(p: &[u8]) -> Option<String> {
    let mut out: Vec<u8> = Vec::with_capacity(p.len());
    let mut i = 0;
    // At the start of a segment (just after a slash).
    let mut segment_start = false;
    while i < p.len() {
        let b = p[i];
        if b == b'/' || b == b'\\' {
            out.push(b'/');
            i += 1;
            segment_start = true;
            continue;
        }
        if std::mem::take(&mut segment_start) {
            if let Some((dots, len)) = dot_segment(p, i) {
                if dots == 2 {
                    // Back over the previous segment, never past the root.
                    out.pop();
                    while out.last().is_some_and(|c| *c != b'/') {
                        out.pop();
                    }
                    if out.is_empty() {
                        out.push(b'/');
                    }
                }
                // The dot segment and the slash ending it go.
                i += len + 1;
                segment_start = true;
                continue;
            }
        }
        if b == b'%' {
            let h = p.get(i + 1).and_then(|c| hex(*c));
            let l = p.get(i + 2).and_then(|c| hex(*c));
            if let (Some(h), Some(l)) = (h, l) {
                match class(h * 16 + l) {
                    Class::Invalid => return None,
                    Class::Unescape => out.push(h * 16 + l),
                    _ => out.extend_from_slice(&p[i..i + 3]),
                }
                i += 3;
                continue;
            }
            out.push(b'%');
            i += 1;
            continue;
        }
        match class(b) {
            Class::Invalid => return None,
            Class::Escape => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
            Class::Pass | Class::Unescape => out.push(b),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn merge_slashes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

fn has_escaped_slash(p: &str) -> bool {
    let l = p.to_ascii_lowercase();
    l.contains("%2f") || l.contains("%5c")
}

fn unescape_slashes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut rest = p;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        match esc.to_ascii_lowercase().as_str() {
            "%2f" => out.push('/'),
            "%5c" => out.push('\\'),
            _ => {
                out.push_str(esc);
            }
        }
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

/// The HCM's normalisation options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashesAction,
}

/// Normalises `:path` (path and query) under `o`.
pub fn normalize(full: &str, o: &Options) -> Normalized {
    if full.contains('#') {
        return Normalized::Rejected;
    }
    let (path, query) = match full.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (full, None),
    };
    let mut path = path.to_string();
    match o.escaped_slashes {
        EscapedSlashesAction::KeepUnchanged => {}
        _ if !has_escaped_slash(&path) => {}
        EscapedSlashesAction::RejectRequest => return Normalized::Rejected,
        EscapedSlashesAction::UnescapeAndForward => path = unescape_slashes(&path),
        EscapedSlashesAction::UnescapeAndRedirect => {
            let mut to = unescape_slashes(&path);
            if let Some(q) = query {
                to = format!("{to}?{q}");
            }
            return Normalized::Redirect(to);
        }
    }
    if o.normalize_path {
        match canonicalize(path.as_bytes()) {
            Some(p) => path = p,
            None => return Normalized::Rejected,
        }
    }
    if o.merge_slashes {
        path = merge_slashes(&path);
    }
    Normalized::Path(match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(p: &str) -> String {
        let o = Options {
            normalize_path: true,
            ..Default::default()
        };
        match normalize(p, &o) {
            Normalized::Path(p) => p,
            other => format!("{other:?}"),
        }
    }

    /// Each pair observed from Envoy 1.36 with istiod's default
    /// (`normalize_path: true`, escaped slashes kept, slashes not merged).
    #[test]
    fn as_envoy_normalizes() {
        for (input, envoy) in [
            ("/a/./b", "/a/b"),
            ("/a/%2E%2e/b", "/b"),
            ("/a//b", "/a//b"),
            ("/a/%2f/b", "/a/%2f/b"),
            ("/%7euser/%41b%c3%a9", "/~user/Ab%c3%a9"),
            ("/a\\b", "/a/b"),
            ("/a/b/../../../..", "/"),
            ("/a\"b{c}<d>`e|f^g", "/a%22b%7Bc%7D%3Cd%3E%60e%7Cf%5Eg"),
            ("/a?x=/../y&z=%2e", "/a?x=/../y&z=%2e"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/%zz/%2", "/a/%zz/%2"),
            ("/a;b/c", "/a;b/c"),
            ("/a/%2E/b/.%2e/c", "/a/c"),
            ("/x/../api", "/api"),
            ("/api/%2e%2e/x", "/x"),
            ("/", "/"),
        ] {
            assert_eq!(base(input), envoy, "{input}");
        }
        assert_eq!(base("/a%00b"), "Rejected");
        assert_eq!(base("/api#frag"), "Rejected");
    }

    #[test]
    fn slashes_options() {
        let o = Options {
            normalize_path: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashesAction::UnescapeAndForward,
        };
        assert_eq!(
            normalize("/a//b/%2F/c?q=//", &o),
            Normalized::Path("/a/b/c?q=//".into())
        );
        let reject = Options {
            escaped_slashes: EscapedSlashesAction::RejectRequest,
            ..o
        };
        assert_eq!(normalize("/a/%2f", &reject), Normalized::Rejected);
        assert_eq!(normalize("/a/b", &reject), Normalized::Path("/a/b".into()));
        let redirect = Options {
            escaped_slashes: EscapedSlashesAction::UnescapeAndRedirect,
            ..o
        };
        assert_eq!(
            normalize("/a/%2Fb?x", &redirect),
            Normalized::Redirect("/a//b?x".into())
        );
    }
}
