//! `meshsim curl`: start the mesh, send one request, print like curl.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use meshsim_compiler::World;
use meshsim_mesh::curl::{CurlRequest, From, HttpVersion};
use meshsim_mesh::logs::prefixed;
use meshsim_mesh::{Mesh, MeshOptions};

use crate::CurlArgs;

/// The request curl would send for these flags.
pub fn request(a: &CurlArgs) -> Result<CurlRequest> {
    let cacert = match &a.cacert {
        Some(p) => {
            Some(std::fs::read(p).map_err(|e| anyhow::anyhow!("--cacert {}: {e}", p.display()))?)
        }
        None => None,
    };
    let client_cert = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => {
            use rustls_pki_types::pem::PemObject;
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(c)
                .map_err(|e| anyhow::anyhow!("--cert {}: {e}", c.display()))?
                .filter_map(|x| x.ok())
                .collect();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(k)
                .map_err(|e| anyhow::anyhow!("--key {}: {e}", k.display()))?;
            Some(meshsim_proxy::env::CertifiedKey { chain, key })
        }
        (None, None) => None,
        _ => bail!("--cert and --key go together"),
    };
    Ok(CurlRequest {
        client_cert,
        url: a.url.clone(),
        method: a.method.clone(),
        headers: a.headers.clone(),
        data: a.data.clone(),
        head: a.head,
        insecure: a.insecure,
        version: if a.http10 {
            HttpVersion::Http10
        } else if a.http11 {
            HttpVersion::Http11
        } else if a.http2 {
            HttpVersion::Http2
        } else {
            HttpVersion::Default
        },
        resolve: a.resolve.clone(),
        connect_to: a.connect_to.clone(),
        cacert,
        timeout: a.max_time.map(Duration::from_secs_f64),
        verbose: a.verbose,
    })
}

pub async fn run(world: World, a: CurlArgs, opts: MeshOptions) -> Result<ExitCode> {
    let from = resolve_from(&world, &a.from)?;
    let req = request(&a)?;
    let mesh = Mesh::start(world, opts).await?;
    for w in mesh.warnings() {
        eprintln!("meshsim: warning: {w}");
    }
    let fd_events = meshsim_mesh::fdlimit::exhaustion_events();
    let (resp, lines) = mesh.curl_logged(&from, &req).await;
    if let Some(h) = meshsim_mesh::fdlimit::hint_if(fd_events, &[]) {
        eprintln!("{h}");
    }
    let mut out = std::io::stdout().lock();
    if a.verbose {
        eprint!("{}", resp.verbose);
    }
    if a.head {
        if let Some(status) = resp.status {
            // curl prints the status line as received: HTTP/1.x has a
            // reason phrase, HTTP/2 has none.
            let version = resp.http_version.as_deref().unwrap_or("1.1");
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .filter(|_| version != "2");
            let _ = match reason {
                Some(r) => writeln!(out, "HTTP/{version} {status} {r}"),
                None => writeln!(out, "HTTP/{version} {status}"),
            };
            for (k, v) in &resp.headers {
                let _ = writeln!(out, "{k}: {v}");
            }
        }
    } else {
        match a.output.as_deref() {
            Some("/dev/null") => {}
            Some(path) => std::fs::write(path, &resp.body)?,
            None => {
                let _ = out.write_all(&resp.body);
            }
        }
    }
    if let Some(w) = &a.write_out {
        let _ = write!(out, "{}", resp.write_out(w));
    }
    let _ = out.flush();
    if let Some(e) = &resp.error {
        // curl -s hides errors unless -S; meshsim always shows them on stderr.
        eprintln!("{e}");
    }
    for l in lines {
        eprintln!("{}", prefixed(&l));
    }
    mesh.shutdown().await;
    Ok(ExitCode::from(resp.exit_code.clamp(0, 255) as u8))
}

/// `--from`: `outside`, or a pod with or without a sidecar.
pub fn resolve_from(world: &World, from: &str) -> Result<From> {
    if from == "outside" {
        return Ok(From::Outside);
    }
    match meshsim_compiler::find_pod(world, from) {
        Ok(Some(p)) => Ok(From::Pod(p.name.clone(), p.namespace.clone())),
        Ok(None) => {
            let known: Vec<String> = world.pods.iter().map(|p| p.id()).collect();
            bail!("--from {from}: no pod {from:?}; pods: {}", known.join(", "))
        }
        Err(e) => bail!("--from {from}: {e}"),
    }
}

/// `meshsim explain`: the walk and the prediction; with `send`, the real
/// request and its access-log lines, and whether they agree (exit 0) or
/// not (exit 3: a bug in meshsim's walk or its data plane).
pub async fn explain(world: World, a: CurlArgs, send: bool, opts: MeshOptions) -> Result<ExitCode> {
    let from = resolve_from(&world, &a.from)?;
    let req = request(&a)?;
    let mesh = Mesh::start(world, opts).await?;
    let e = meshsim_mesh::explain::explain(&mesh, &from, &req, None);
    let mut out = e.render();
    let mut code = ExitCode::SUCCESS;
    if send {
        let (resp, lines) = mesh.curl_logged(&from, &req).await;
        out.push_str("\nsent:\n");
        match (&resp.error, resp.status) {
            (Some(err), _) => out.push_str(&format!("  {err}\n")),
            (None, Some(s)) => out.push_str(&format!("  {s}\n")),
            (None, None) => {}
        }
        for l in &lines {
            out.push_str(&format!("  {}\n", prefixed(l)));
        }
        let disagreements = meshsim_mesh::explain::compare(&e.prediction, &resp, &lines);
        if disagreements.is_empty() {
            out.push_str("the prediction and the access logs agree\n");
        } else {
            for d in &disagreements {
                out.push_str(&format!("DISAGREEMENT: {d}\n"));
            }
            code = ExitCode::from(3);
        }
    }
    mesh.shutdown().await;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(code)
}
