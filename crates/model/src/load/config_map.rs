//! ConfigMaps: an application's files (an nginx.conf), or — ConfigMap
//! `istio` in `istio-system`, key `mesh` — the mesh config, whose text is a
//! YAML document of its own with positions mapped back into the file.

use std::collections::BTreeMap;

use serde_saphyr::Spanned;

use super::{parse_typed, DocCtx, Loaded};
use crate::common::Unsimulated;
use crate::mesh;
use crate::resource::{Meta, Object, Resource};

pub(super) fn parse_config_map(
    ctx: &DocCtx<'_>,
    doc_text: &str,
    meta: Meta,
    data: BTreeMap<String, Spanned<String>>,
    out: &mut Loaded,
) {
    let is_mesh = meta.name == "istio" && meta.ns() == "istio-system";
    if !is_mesh {
        let data = data.into_iter().map(|(k, v)| (k, v.value)).collect();
        out.resources
            .push(Resource::ConfigMap(Box::new(Object { meta, spec: data })));
        return;
    }
    let Some(mesh_text) = data.get("mesh") else {
        out.diagnostics.push(ctx.warning(
            1,
            1,
            "data",
            "ConfigMap istio/istio-system has no `mesh` key: Istio's defaults apply",
        ));
        return;
    };
    // The mesh text is a YAML document of its own; map its lines back.
    let vline = mesh_text.referenced.line();
    let token_line = doc_text
        .lines()
        .nth(vline.saturating_sub(1) as usize)
        .unwrap_or("");
    let after = token_line
        .chars()
        .skip(mesh_text.referenced.column().saturating_sub(1) as usize)
        .collect::<String>();
    let block = after.trim_start().starts_with('|') || after.trim_start().starts_with('>');
    let indent = if block {
        doc_text
            .lines()
            .nth(vline as usize)
            .map(|l| l.len() - l.trim_start().len())
            .unwrap_or(0) as u64
    } else {
        0
    };
    let inner = DocCtx {
        file: ctx.file,
        line_offset: ctx.line_offset
            + if block {
                vline
            } else {
                vline.saturating_sub(1)
            },
        col_offset: if block {
            indent
        } else {
            mesh_text.referenced.column().saturating_sub(1)
        },
    };
    if mesh_text.value.trim().is_empty() {
        out.resources.push(Resource::MeshConfig(Box::new(Object {
            meta,
            spec: mesh::MeshConfig::default(),
        })));
        return;
    }
    match parse_typed::<mesh::MeshConfig>(&inner, &mesh_text.value) {
        Ok(mc) => {
            let mut found = Vec::new();
            mc.unsimulated("data.mesh", &mut found);
            for (path, (line, col)) in found {
                out.diagnostics.push(inner.warning(
                    line,
                    col,
                    &path,
                    "accepted but not simulated by meshsim: it has no effect on the simulated mesh",
                ));
            }
            out.resources
                .push(Resource::MeshConfig(Box::new(Object { meta, spec: mc })));
        }
        Err(mut d) => {
            d.path = if d.path.is_empty() {
                "data.mesh".into()
            } else {
                format!("data.mesh.{}", d.path)
            };
            out.diagnostics.push(d);
        }
    }
}
