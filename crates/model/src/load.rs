//! Loading: files and directories of multi-document YAML (and `kind: List`)
//! into typed [`Resource`]s, collecting every diagnostic of the load.
//!
//! Documents are split the way `kubectl` splits them (a line starting with
//! `---`), then each is parsed twice: once loosely to learn `apiVersion` and
//! `kind`, once strictly into the kind's type. Parse errors carry the
//! document's line offset so they point into the user's file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options};

use crate::diag::Diagnostic;
use crate::resource::Resource;

/// Files larger than this are refused rather than parsed.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// All the files of one load together: past this, the remaining files are
/// refused (each named) rather than parsed — memory stays bounded whatever
/// a directory holds.
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;

/// The result of a load: everything that parsed, and every problem found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    /// `kubectl apply -n NS`: objects without a namespace go to `ns`; one
    /// that names another namespace is an error, as kubectl reports it
    /// (`strict`; `istioctl analyze -n` only fills in missing ones).
    pub fn apply_namespace(&mut self, ns: &str, strict: bool) {
        for r in &mut self.resources {
            if !r.is_namespaced() {
                continue;
            }
            let meta = r.meta_mut();
            match meta.namespace.as_deref().filter(|n| !n.is_empty()) {
                None => meta.namespace = Some(ns.to_string()),
                Some(n) if n == ns || !strict => {}
                Some(n) => self.diagnostics.push(Diagnostic::error(
                    &meta.origin.file,
                    meta.origin.line,
                    0,
                    "metadata.namespace",
                    format!(
                        "the namespace from the provided object {n:?} does not match the namespace {ns:?}. You must pass '--namespace={n}' to perform this operation."
                    ),
                )),
            }
        }
    }

    /// Adds another load's resources and diagnostics after these.
    pub fn extend(&mut self, other: Loaded) {
        self.resources.extend(other.resources);
        self.diagnostics.extend(other.diagnostics);
    }
}

/// Loads files and directories (recursively: `*.yaml`, `*.yml`, `*.json`,
/// in name order), `-` for stdin. I/O problems become diagnostics too.
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Loaded {
    load_paths_within(paths, MAX_TOTAL_BYTES)
}

/// [`load_paths`] reading at most `cap` bytes in all.
fn load_paths_within<P: AsRef<Path>>(paths: &[P], cap: u64) -> Loaded {
    let mut out = Loaded::default();
    let mut total = 0u64;
    for p in paths {
        let p = p.as_ref();
        // `-f -`: the documents come on stdin (kubectl's `STDIN`).
        if p == Path::new("-") {
            let mut bytes = Vec::new();
            let read = std::io::Read::read_to_end(
                &mut std::io::Read::take(std::io::stdin(), cap.saturating_sub(total) + 1),
                &mut bytes,
            );
            match read {
                Ok(_) if bytes.len() as u64 + total > cap => {
                    out.diagnostics.push(Diagnostic::error(
                        "STDIN",
                        0,
                        0,
                        "",
                        format!("one run reads at most {cap} bytes"),
                    ))
                }
                Ok(_) => {
                    total += bytes.len() as u64;
                    out.extend(parse_bytes("STDIN", &bytes));
                }
                Err(e) => out.diagnostics.push(Diagnostic::error(
                    "STDIN",
                    0,
                    0,
                    "",
                    format!("cannot read: {e}"),
                )),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(p, &mut files) {
            out.diagnostics.push(Diagnostic::error(
                &p.display().to_string(),
                0,
                0,
                "",
                format!("cannot read: {e}"),
            ));
            continue;
        }
        for f in files {
            let name = f.display().to_string();
            match std::fs::metadata(&f) {
                Ok(m) if total + m.len() > cap => {
                    out.diagnostics.push(Diagnostic::error(
                        &name,
                        0,
                        0,
                        "",
                        format!(
                            "not read: the files before it hold {total} bytes and this one {}; one run reads at most {cap} bytes",
                            m.len()
                        ),
                    ));
                    continue;
                }
                Ok(m) if m.len() as usize > MAX_FILE_BYTES => {
                    out.diagnostics.push(Diagnostic::error(
                        &name,
                        0,
                        0,
                        "",
                        format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", m.len()),
                    ));
                    continue;
                }
                Err(e) => {
                    out.diagnostics.push(Diagnostic::error(
                        &name,
                        0,
                        0,
                        "",
                        format!("cannot read: {e}"),
                    ));
                    continue;
                }
                Ok(m) => total += m.len(),
            }
            match std::fs::read(&f) {
                Ok(bytes) => out.extend(parse_bytes(&name, &bytes)),
                Err(e) => out.diagnostics.push(Diagnostic::error(
                    &name,
                    0,
                    0,
                    "",
                    format!("cannot read: {e}"),
                )),
            }
        }
    }
    out
}

/// The files a path names, as `kubectl apply -f` reads it: the file
/// itself, or a directory's `.yaml`/`.yml`/`.json` files (recursively, in
/// name order, hidden ones skipped).
pub fn input_files(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect_files(p, &mut out)?;
    Ok(out)
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let hidden = e
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if e.is_dir() {
                collect_files(&e, out)?;
            } else if e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
            {
                out.push(e);
            }
        }
        Ok(())
    } else {
        std::fs::metadata(p)?;
        out.push(p.to_path_buf());
        Ok(())
    }
}

/// Parses raw bytes: refuses non-UTF-8 and oversized input with an error.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Loaded {
    if bytes.len() > MAX_FILE_BYTES {
        let mut l = Loaded::default();
        l.diagnostics.push(Diagnostic::error(
            file,
            0,
            0,
            "",
            format!(
                "input is {} bytes; the limit is {MAX_FILE_BYTES}",
                bytes.len()
            ),
        ));
        return l;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_str(file, text),
        Err(e) => {
            let (line, col) = line_col(bytes, e.valid_up_to());
            let mut l = Loaded::default();
            l.diagnostics.push(Diagnostic::error(
                file,
                line,
                col,
                "",
                "not UTF-8 text: expected a YAML or JSON manifest",
            ));
            l
        }
    }
}

fn line_col(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
    (line, col)
}

/// Parses one file's text (which may hold many documents).
pub fn parse_str(file: &str, text: &str) -> Loaded {
    let mut out = Loaded::default();
    if text.contains('\0') {
        let (line, col) = line_col(text.as_bytes(), text.find('\0').unwrap_or(0));
        out.diagnostics.push(Diagnostic::error(
            file,
            line,
            col,
            "",
            "binary data (NUL byte): expected a YAML or JSON manifest",
        ));
        return out;
    }
    for doc in split_documents(text) {
        let ctx = DocCtx {
            file,
            line_offset: doc.line_offset,
            col_offset: 0,
        };
        parse_document(&ctx, doc.text, &mut out);
    }
    out
}

struct DocText<'a> {
    text: &'a str,
    line_offset: u64,
}

/// Splits like kubectl's YAML reader: a line beginning with `---` followed by
/// nothing but white space or a comment starts a new document.
fn split_documents(text: &str) -> Vec<DocText<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 0u64;
    let mut pos = 0usize;
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if rest.is_empty() || rest.starts_with('#') {
                docs.push(DocText {
                    text: &text[start..pos],
                    line_offset: start_line,
                });
                start = pos + line.len();
                start_line = idx as u64 + 1;
            }
        }
        pos += line.len();
    }
    docs.push(DocText {
        text: &text[start..],
        line_offset: start_line,
    });
    docs.retain(|d| {
        d.text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "..."
        })
    });
    docs
}

/// Where a document sits in its file, for translating parser positions.
struct DocCtx<'a> {
    file: &'a str,
    line_offset: u64,
    col_offset: u64,
}

impl DocCtx<'_> {
    fn at(&self, line: u64, col: u64) -> (u64, u64) {
        if line == 0 {
            return (self.line_offset + 1, 0);
        }
        (line + self.line_offset, col + self.col_offset)
    }

    fn error(&self, line: u64, col: u64, path: &str, msg: impl Into<String>) -> Diagnostic {
        let (l, c) = self.at(line, col);
        Diagnostic::error(self.file, l, c, path, msg)
    }

    fn warning(&self, line: u64, col: u64, path: &str, msg: impl Into<String>) -> Diagnostic {
        let (l, c) = self.at(line, col);
        Diagnostic::warning(self.file, l, c, path, msg)
    }
}

fn options() -> Options {
    let mut o = Options::default();
    let mut b = Budget::default();
    b.max_depth = 128;
    b.max_aliases = 1_000;
    b.max_anchors = 1_000;
    b.max_events = 4_000_000;
    b.max_nodes = 2_000_000;
    b.max_documents = 1;
    o.budget = Some(b);
    o.with_snippet = false;
    o.duplicate_keys = DuplicateKeyPolicy::Error;
    o
}

/// Strictly deserializes `text` into `T`, turning failures into a diagnostic
/// that names the position, the field path and what was expected.
fn parse_typed<T: DeserializeOwned>(ctx: &DocCtx<'_>, text: &str) -> Result<T, Diagnostic> {
    let mut path = String::new();
    let r = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    r.map_err(|e| {
        let path = if path == "." { "" } else { path.as_str() };
        saphyr_diag(ctx, &e, path)
    })
}

fn saphyr_diag(ctx: &DocCtx<'_>, e: &serde_saphyr::Error, path: &str) -> Diagnostic {
    let (line, col) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let msg = clean_message(&e.without_snippet().to_string());
    ctx.error(line, col, path, msg)
}

/// serde-saphyr appends " at line X column Y"; we print the position ourselves.
fn clean_message(msg: &str) -> String {
    let mut m = msg.trim().to_string();
    if let Some(i) = m.find(" at line ") {
        m.truncate(i);
    }
    if let Some(rest) = m.strip_prefix("error: ") {
        m = rest.to_string();
    }
    m
}

mod config_map;
mod kinds;
mod list;
mod validate;

use kinds::parse_document;

#[cfg(test)]
mod tests;
