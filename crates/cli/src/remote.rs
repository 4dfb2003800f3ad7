//! Commands that act on the running sandbox (its state file says where):
//! `apply` / `delete -f FILE|DIR|-` and `proxy-status` without `-f`.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use meshsim_mesh::remote::{self, ChangeRequest, Document, Reply};

use crate::args::ChangeArgs;

/// The files `-f` names, as kubectl reads them: `-` is stdin, a directory
/// its `.yaml`/`.yml`/`.json` files in name order.
fn documents(files: &[String]) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| anyhow!("reading stdin: {e}"))?;
            docs.push(Document {
                file: "STDIN".into(),
                text,
            });
            continue;
        }
        let paths = meshsim_model::input_files(&PathBuf::from(f))
            .map_err(|e| anyhow!("{f}: cannot read: {e}"))?;
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| anyhow!("{}: cannot read: {e}", p.display()))?;
            docs.push(Document {
                file: p.display().to_string(),
                text,
            });
        }
    }
    Ok(docs)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Prints what the sandbox said and exits as it says.
fn relay(r: Reply) -> Result<ExitCode> {
    crate::write_stdout(&r.stdout);
    eprint!("{}", r.stderr);
    Ok(ExitCode::from(r.code))
}

fn sandbox() -> Result<remote::SandboxState> {
    remote::find_sandbox().map_err(|e| anyhow!(e))
}

/// `meshsim apply|delete -f ...`.
pub fn change(a: &ChangeArgs, delete: bool) -> Result<ExitCode> {
    let state = sandbox()?;
    let req = ChangeRequest {
        namespace: a.namespace.clone(),
        documents: documents(&a.files)?,
    };
    let path = if delete { "/delete" } else { "/apply" };
    let reply = runtime()?
        .block_on(remote::call(&state, path, serde_json::to_vec(&req)?))
        .map_err(|e| anyhow!(e))?;
    relay(reply)
}

/// `meshsim proxy-status` against the running sandbox.
pub fn proxy_status() -> Result<ExitCode> {
    let state = sandbox()?;
    let reply = runtime()?
        .block_on(remote::call(&state, "/proxy-status", vec![]))
        .map_err(|e| anyhow!(e))?;
    relay(reply)
}

/// `meshsim logs TARGET [-f] [--tail N]` against the running sandbox.
pub fn logs(
    target: String,
    namespace: Option<String>,
    follow: bool,
    tail: Option<usize>,
) -> Result<ExitCode> {
    let state = sandbox()?;
    let rt = runtime()?;
    let mut req = remote::LogsRequest {
        target,
        namespace,
        since: None,
        tail,
    };
    loop {
        let reply = rt
            .block_on(remote::call(&state, "/logs", serde_json::to_vec(&req)?))
            .map_err(|e| anyhow!(e))?;
        if reply.code != 0 || !follow {
            return relay(reply);
        }
        crate::write_stdout(&reply.stdout);
        req.since = reply.next;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The running sandbox's proxy `target` as `proxy-config` reads it.
pub fn proxy_dump(target: &str, namespace: Option<String>) -> Result<remote::ProxyDump> {
    let state = sandbox()?;
    let req = remote::ProxyRequest {
        target: target.to_string(),
        namespace,
    };
    let reply = runtime()?
        .block_on(remote::call(
            &state,
            "/proxy-dump",
            serde_json::to_vec(&req)?,
        ))
        .map_err(|e| anyhow!(e))?;
    if reply.code != 0 {
        return Err(anyhow!(
            "{}",
            reply.stderr.trim().trim_start_matches("error: ")
        ));
    }
    Ok(serde_json::from_str(&reply.stdout)?)
}

/// `meshsim analyze [-n NS | -A]` of the running sandbox.
pub fn analyze(req: remote::AnalyzeRequest) -> Result<ExitCode> {
    let state = sandbox()?;
    let reply = runtime()?
        .block_on(remote::call(&state, "/analyze", serde_json::to_vec(&req)?))
        .map_err(|e| anyhow!(e))?;
    relay(reply)
}

/// `meshsim sandbox ports`: the running sandbox's ports as JSON.
pub fn ports() -> Result<ExitCode> {
    let state = sandbox()?;
    let reply = runtime()?
        .block_on(remote::call(&state, "/ports", vec![]))
        .map_err(|e| anyhow!(e))?;
    relay(reply)
}
