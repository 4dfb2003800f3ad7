//! `kind: List` (what `kubectl get -o yaml` prints): each item is parsed
//! as a document of its own, keeping its position in the file.

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{parse_document, parse_typed, DocCtx, Loaded};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListDoc {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    items: Vec<Spanned<IgnoredAny>>,
}

/// `kind: List`: each item is re-parsed as its own document, keeping its
/// position in the file.
pub(super) fn parse_list(ctx: &DocCtx<'_>, text: &str, out: &mut Loaded) {
    let list: ListDoc = match parse_typed(ctx, text) {
        Ok(l) => l,
        Err(d) => {
            out.diagnostics.push(d);
            return;
        }
    };
    for item in list.items {
        let Some(off) = item.referenced.span().byte_offset() else {
            out.diagnostics.push(ctx.error(
                item.referenced.line(),
                item.referenced.column(),
                "items",
                "cannot locate list item",
            ));
            continue;
        };
        let rest = text.get(off as usize..).unwrap_or("");
        let col = item.referenced.column().saturating_sub(1);
        let item_text = if rest.starts_with('{') {
            flow_item(rest)
        } else {
            block_item(rest, col as usize)
        };
        let ictx = DocCtx {
            file: ctx.file,
            line_offset: ctx.line_offset + item.referenced.line().saturating_sub(1),
            col_offset: ctx.col_offset + col,
        };
        parse_document(&ictx, &item_text, out);
    }
}

/// A flow-style (JSON) item: up to its matching closing brace.
fn flow_item(rest: &str) -> String {
    let (mut depth, mut in_str, mut escaped) = (0usize, None::<char>, false);
    for (i, c) in rest.char_indices() {
        if let Some(q) = in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                in_str = None;
            }
            continue;
        }
        match c {
            '"' | '\'' => in_str = Some(c),
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return rest[..=i].to_string();
                }
            }
            _ => {}
        }
    }
    rest.to_string()
}

/// A block-style item: its first line, then every following line indented at
/// least to the item's column (blank lines included), dedented to column 1.
fn block_item(rest: &str, col: usize) -> String {
    let mut out = String::with_capacity(rest.len().min(4096));
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if i == 0 {
            out.push_str(line);
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        if line.trim().is_empty() {
            out.push('\n');
        } else if indent >= col {
            out.push_str(&line[col..]);
        } else {
            break;
        }
    }
    out
}
