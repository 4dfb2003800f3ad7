//! The `meshsim` binary as a user runs it: `validate` and `proxy-config`
//! on Istio's Bookinfo sample.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn meshsim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run meshsim");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BOOKINFO: &str = "tests/fixtures/bookinfo";

/// A private directory for a test's files, removed when the test ends.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("meshsim-cli-")
        .tempdir()
        .expect("tmp")
}

#[test]
fn sleep_clusters_list_subsets_and_special_clusters() {
    let (code, out, err) = meshsim(&["proxy-config", "clusters", "deploy/sleep", "-f", BOOKINFO]);
    assert_eq!(code, 0, "{err}");
    for want in [
        // istioctl's columns: tabwriter padding 5.
        "reviews.default.svc.cluster.local                       9080      v1              outbound      EDS              reviews.default\n",
        "PassthroughCluster",
        "BlackHoleCluster",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (_, json, _) = meshsim(&[
        "proxy-config",
        "clusters",
        "deploy/sleep",
        "-f",
        BOOKINFO,
        "-o",
        "json",
    ]);
    for name in [
        "outbound|9080|v1|reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "outbound|9080|v3|reviews.default.svc.cluster.local",
    ] {
        assert!(
            json.contains(&format!("\"name\": \"{name}\"")),
            "missing {name}"
        );
    }
}

/// `proxy-config all -o json` is the config dump as istioctl prints it —
/// Envoy's admin output verbatim (snake_case, one-space indent): the
/// `configs` envelope of admin `*ConfigDump` messages in Envoy's order,
/// dynamic resources with `version_info`, typed filters, Istio's cluster
/// metadata, the SDS secrets (keys redacted), and none of meshsim's own
/// bookkeeping.
#[test]
fn all_json_is_an_envoy_config_dump() {
    let (code, out, err) = meshsim(&["pc", "all", "deploy/sleep", "-f", BOOKINFO, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let types: Vec<&str> = v["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter_map(|c| c["@type"].as_str())
        .collect();
    let want: Vec<String> = [
        "BootstrapConfigDump",
        "ClustersConfigDump",
        "EndpointsConfigDump",
        "ListenersConfigDump",
        "ScopedRoutesConfigDump",
        "RoutesConfigDump",
        "SecretsConfigDump",
    ]
    .iter()
    .map(|t| format!("type.googleapis.com/envoy.admin.v3.{t}"))
    .collect();
    assert_eq!(types, want);
    assert!(
        out.starts_with("{\n \"configs\": [\n  {\n"),
        "one-space indent"
    );
    let clusters = &v["configs"][1]["dynamic_active_clusters"];
    let reviews = clusters
        .as_array()
        .expect("clusters")
        .iter()
        .find(|c| c["cluster"]["name"] == "outbound|9080|v2|reviews.default.svc.cluster.local")
        .expect("reviews v2");
    assert!(reviews["version_info"].is_string());
    assert_eq!(
        reviews["cluster"]["@type"],
        "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    let istio = &reviews["cluster"]["metadata"]["filter_metadata"]["istio"];
    assert_eq!(istio["subset"], "v2");
    assert_eq!(
        istio["services"][0]["host"],
        "reviews.default.svc.cluster.local"
    );
    assert_eq!(
        istio["config"],
        "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"
    );
    for invented in [
        "istio_mode",
        "istioMode",
        "trusted_ca_sds",
        "trustedCaSds",
        "\"direction\"",
        "null",
    ] {
        assert!(!out.contains(invented), "{invented} in the dump");
    }
    assert!(out.contains("\"sds_config\""));
    let secrets: Vec<&str> = v["configs"][6]["dynamic_active_secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(secrets, ["default", "ROOTCA"]);
    assert!(!out.contains("PRIVATE KEY"));
    assert!(out.contains("\"@type\": \"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\""));
}

#[test]
fn routes_have_istiod_domains_and_allow_any() {
    let (code, out, err) = meshsim(&[
        "proxy-config",
        "routes",
        "deploy/sleep",
        "-f",
        BOOKINFO,
        "-o",
        "json",
        "--name",
        "9080",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    // Protobuf JSON, as istioctl prints it: camelCase field names.
    let vhosts = v[0]["virtualHosts"].as_array().expect("vhosts");
    let reviews = vhosts
        .iter()
        .find(|h| h["name"] == "reviews.default.svc.cluster.local:9080")
        .expect("reviews vhost");
    let domains: Vec<&str> = reviews["domains"]
        .as_array()
        .expect("d")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert_eq!(
        &domains[..4],
        &[
            "reviews.default.svc.cluster.local",
            "reviews",
            "reviews.default.svc",
            "reviews.default"
        ]
    );
    assert!(vhosts.iter().any(|h| h["name"] == "allow_any"));
    assert_eq!(
        reviews["routes"][0]["match"]["headers"][0]["name"],
        "end-user"
    );
    assert_eq!(
        reviews["routes"][0]["route"]["cluster"],
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
}

#[test]
fn ingress_gateway_has_http_8080() {
    let (code, out, err) = meshsim(&[
        "pc",
        "listeners",
        "istio-ingressgateway-0.istio-system",
        "-f",
        BOOKINFO,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Route: http.8080"), "{out}");
}

#[test]
fn misspelled_field_fails_with_file_and_line() {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).expect("tmp");
    let f = dir.join("vs.yaml");
    std::fs::write(&f, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subsett: v1\n").expect("write");
    let path = f.to_string_lossy().into_owned();
    let (code, _, err) = meshsim(&["validate", "-f", &path]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{path}:11:9: error: spec.http[0].route[0].destination.subsett: unknown field `subsett`")), "{err}");
    let (code, _, err) = meshsim(&[
        "proxy-config",
        "routes",
        "deploy/sleep",
        "-f",
        BOOKINFO,
        "-f",
        &path,
    ]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn unknown_proxy_lists_the_known_ones() {
    let (code, _, err) = meshsim(&["pc", "routes", "deploy/nope", "-f", BOOKINFO]);
    assert_ne!(code, 0);
    assert!(err.contains("sleep-0.default"), "{err}");
}

/// `meshsim run`: a transcript ending with `N passed, M failed`, or JSON.
#[test]
fn run_prints_transcripts_and_a_summary() {
    let (code, out, err) = meshsim(&["run", "scenarios/no-route"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("== step 2: a path the VirtualService does not route"),
        "{out}"
    );
    assert!(out.contains("404 NR route_not_found"), "{out}");
    assert!(out.trim_end().ends_with("1 passed, 0 failed"), "{out}");
    let (code, out, _) = meshsim(&["run", "scenarios/no-route", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["passed"], 1);
    assert_eq!(v["scenarios"][0]["name"], "no-route");
    assert!(v["scenarios"][0]["steps"][1]["verdicts"][0]["ok"]
        .as_bool()
        .unwrap_or(false));
}

/// A broken scenario fails with a readable diff and a non-zero exit.
#[test]
fn failing_scenario_exits_non_zero_with_expected_vs_observed() {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).expect("tmp");
    let sc = root().join("scenarios/no-route");
    let text = std::fs::read_to_string(sc.join("scenario.yaml"))
        .expect("read")
        .replace("status: 404", "status: 418")
        .replace(
            "../_shared/",
            &format!("{}/", root().join("scenarios/_shared").display()),
        )
        .replace(
            "vs-hello-only.yaml",
            &sc.join("vs-hello-only.yaml").display().to_string(),
        )
        .replace(
            "fix-default-route.yaml",
            &sc.join("fix-default-route.yaml").display().to_string(),
        );
    std::fs::write(dir.join("scenario.yaml"), text).expect("write");
    let (code, out, _) = meshsim(&["run", &dir.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL status: expected 418, observed 404"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("0 passed, 1 failed"), "{out}");
}

/// `-n` works as `kubectl apply -n` for the input (objects that name no
/// namespace land there; one naming another is kubectl's error) and as
/// `istioctl -n` for the proxy.
#[test]
fn namespace_flag_applies_and_selects() {
    let (code, json, err) = meshsim(&[
        "proxy-config",
        "clusters",
        "deploy/sleep",
        "-n",
        "books",
        "-f",
        BOOKINFO,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        json.contains("\"name\": \"outbound|9080|v1|reviews.books.svc.cluster.local\""),
        "{json}"
    );
    assert!(!json.contains("reviews.default"), "{json}");
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).expect("tmp");
    let f = dir.join("svc.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: other}\nspec:\n  ports: [{port: 80}]\n",
    )
    .expect("write");
    let (code, _, err) = meshsim(&["validate", "-n", "books", "-f", f.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("svc.yaml:1")
            && err.contains("metadata.namespace")
            && err.contains("does not match the namespace \"books\""),
        "{err}"
    );
}

/// `meshsim load` as fortio: every call through keep-alive connections
/// answered 200; with the circuit-breaking task's limits, 8 concurrent
/// connections overflow into 503s — fortio still exits 0, and meshsim
/// names the flag the caller's sidecar logged.
#[test]
fn load_reports_codes_like_fortio() {
    let (code, out, err) = meshsim(&[
        "load",
        "-f",
        BOOKINFO,
        "--from",
        "deploy/sleep",
        "-c",
        "2",
        "-qps",
        "0",
        "-n",
        "20",
        "http://reviews:9080/",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("Code 200 : 20 (100.0 %)"), "{err}");
    assert!(
        err.contains("Sockets used: 2 (for perfect keepalive, would be 2)"),
        "{err}"
    );
    assert!(err.contains("# target 99% "), "{err}");
    let (code, out, err) = meshsim(&[
        "load",
        "-f",
        "scenarios/_shared/sleep.yaml",
        "-f",
        "scenarios/_shared/helloworld.yaml",
        "-f",
        "scenarios/circuit-breaker-overflow/dr-limits.yaml",
        "-c",
        "8",
        "-qps",
        "0",
        "-n",
        "80",
        "http://helloworld:5000/hello",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("Code 503 : "), "{err}");
    assert!(err.contains("UO : "), "{err}");
}

/// `meshsim analyze` as istioctl 1.28 prints it (istioctl/pkg/analyze,
/// util/formatting): Istio's Bookinfo with destination-rule-all.yaml gives
/// the two IST0173 errors for ratings' v2-mysql subsets (istio.io#17329)
/// and exit 79; a warning alone exits 0 unless --failure-threshold says
/// so; -o json/yaml never set the exit code; --suppress and -n filter.
#[test]
fn analyze_like_istioctl() {
    let (code, out, err) = meshsim(&["analyze", "-f", BOOKINFO]);
    assert_eq!(code, 79, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, subset) in lines.iter().zip(["v2-mysql", "v2-mysql-vm"]) {
        assert!(
            line.starts_with("Error [IST0173] (DestinationRule default/ratings tests/fixtures/bookinfo/destination-rule-all.yaml:"),
            "{line}"
        );
        assert!(
            line.ends_with(&format!(") The Subset {subset} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).")),
            "{line}"
        );
    }
    assert_eq!(
        err,
        "Error: Analyzers found issues when analyzing namespace: default.\nSee https://istio.io/v1.28/docs/reference/config/analysis for more information about causes and resolutions.\n"
    );
    // The same errors suppressed by resource, with istioctl's wildcard.
    let (code, out, err) = meshsim(&[
        "analyze",
        "-f",
        BOOKINFO,
        "--suppress",
        "IST0173=DestinationRule ratings.*",
        "--suppress",
        "IST9999=Pod x.y",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "\n");
    assert!(
        err.starts_with("Warning: Supplied message code 'IST9999' is an unknown message code and will not have any effect.\n"),
        "{err}"
    );
    assert!(
        err.contains("\u{2714} No validation issues found when analyzing tests/fixtures/bookinfo."),
        "{err}"
    );
    // -o json: istioctl's keys; never an exit code.
    let (code, out, err) = meshsim(&["analyze", "-f", BOOKINFO, "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let first = &v[0];
    let keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "code",
            "documentationUrl",
            "level",
            "message",
            "origin",
            "reference"
        ]
    );
    assert_eq!(first["code"], "IST0173");
    assert_eq!(first["level"], "Error");
    assert_eq!(first["origin"], "DestinationRule default/ratings");
    assert_eq!(
        first["documentationUrl"],
        "https://istio.io/v1.28/docs/reference/config/analysis/ist0173/?ref=istioctl-analyze"
    );
    assert!(
        out.contains("\n\t{\n\t\t\"code\""),
        "tab-indented as Go's MarshalIndent: {out}"
    );
    let (code, out, _) = meshsim(&["analyze", "-f", BOOKINFO, "-o", "yaml"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("- code: IST0173\n"), "{out}");

    // A mesh unlike Bookinfo: namespace ledger, a subset no pod carries.
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).expect("tmp");
    let app = dir.join("app.yaml");
    std::fs::write(
        &app,
        "apiVersion: v1\nkind: Service\nmetadata: {name: vault, namespace: ledger}\nspec:\n  ports: [{port: 7070, name: http-api}]\n  selector: {app: vault}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: vault-blue, namespace: ledger}\nspec:\n  selector: {matchLabels: {app: vault, track: blue}}\n  template:\n    metadata: {labels: {app: vault, track: blue}}\n    spec: {containers: [{name: app, image: nginx}]}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: vault, namespace: ledger}\nspec:\n  host: vault\n  subsets:\n  - {name: blue, labels: {track: blue}}\n  - {name: green, labels: {track: green}}\n",
    )
    .expect("write");
    let app = app.to_str().expect("utf8");
    let (code, out, _) = meshsim(&["analyze", "-n", "ledger", "-f", app]);
    assert_eq!(code, 79, "{out}");
    assert_eq!(
        out,
        format!("Error [IST0173] (DestinationRule ledger/vault {app}:17) The Subset green defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).\n")
    );
    // `-n` selects what is reported: the default namespace has nothing.
    let (code, out, err) = meshsim(&["analyze", "-f", app]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "\n");
    // Only a warning: exit 0, unless the failure threshold is Warning.
    let gw = dir.join("gw.yaml");
    std::fs::write(
        &gw,
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: ledger}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"vault.example.org\"]}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vault, namespace: ledger}\nspec:\n  hosts: [other.example.org]\n  gateways: [edge]\n  http: [{route: [{destination: {host: vault, subset: blue}}]}]\n",
    )
    .expect("write");
    let gw = gw.to_str().expect("utf8");
    let args = [
        "analyze",
        "-n",
        "ledger",
        "-f",
        app,
        "-f",
        gw,
        "-S",
        "IST0173=*",
    ];
    let (code, out, err) = meshsim(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        format!("Warning [IST0132] (VirtualService ledger/vault {gw}:8) one or more host [other.example.org] defined in VirtualService ledger/vault not found in Gateway ledger/edge.\n")
    );
    let mut strict = args.to_vec();
    strict.extend(["--failure-threshold", "Warning"]);
    assert_eq!(meshsim(&strict).0, 79);
    let mut quiet = args.to_vec();
    quiet.extend(["--output-threshold", "Error"]);
    let (code, out, _) = meshsim(&quiet);
    assert_eq!((code, out.as_str()), (0, "\n"));
}

/// Weighted picks are random per run, like a real mesh, and `--seed`
/// repeats a run exactly.
#[test]
fn curl_is_random_unless_seeded() {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).expect("tmp");
    let vs = dir.join("split.yaml");
    std::fs::write(
        &vs,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hw}\nspec:\n  hosts: [helloworld]\n  http:\n  - route:\n    - {destination: {host: helloworld, subset: v1}, weight: 50}\n    - {destination: {host: helloworld, subset: v2}, weight: 50}\n",
    )
    .expect("write");
    let run = |seed: Option<&str>| {
        let mut args = vec![
            "curl",
            "-f",
            "scenarios/_shared/sleep.yaml",
            "-f",
            "scenarios/_shared/helloworld.yaml",
            "-f",
            vs.to_str().expect("utf8"),
            "-s",
        ];
        if let Some(s) = seed {
            args.extend(["--seed", s]);
        }
        args.push("http://helloworld:5000/hello");
        let (code, out, err) = meshsim(&args);
        assert_eq!(code, 0, "{err}");
        out.lines().next().unwrap_or_default().to_string()
    };
    let seeded: Vec<String> = (0..3).map(|_| run(Some("42"))).collect();
    assert!(seeded.iter().all(|l| l == &seeded[0]), "{seeded:?}");
    // 20 unseeded runs all landing on one subset: 2 * 2^-20.
    let free: std::collections::BTreeSet<String> = (0..20).map(|_| run(None)).collect();
    assert_eq!(free.len(), 2, "{free:?}");
}

/// `curl -I` prints the status line as curl does (`HTTP/1.1 200 OK`,
/// `HTTP/2 200`) and Envoy's headers; a failed request prints none.
#[test]
fn curl_head_prints_status_line_like_curl() {
    let base = ["curl", "-f", BOOKINFO, "-s", "-I"];
    let (code, out, err) = meshsim(&[&base[..], &["http://reviews:9080/"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("HTTP/1.1 200 OK\n"), "{out}");
    assert!(out.contains("\nserver: envoy\n"), "{out}");
    let (_, out, _) = meshsim(&[&base[..], &["--http2", "http://reviews:9080/"]].concat());
    assert!(out.starts_with("HTTP/2 200\n"), "{out}");
    let (code, out, err) = meshsim(&[&base[..], &["http://nothing.default:9080/"]].concat());
    assert_eq!(code, 6, "{err}");
    assert!(out.is_empty(), "{out}");
    let (_, _, err) = meshsim(&[
        "curl",
        "-f",
        BOOKINFO,
        "-s",
        "-v",
        "-o",
        "/dev/null",
        "http://reviews:9080/",
    ]);
    for want in [
        "> GET / HTTP/1.1\n",
        "> user-agent: curl/7.88.1\n",
        "< HTTP/1.1 200 OK\n",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
}

/// istioctl's kinds, short names and filter flags, as an Istio user types
/// them (istioctl/pkg/proxyconfig/proxyconfig.go).
#[test]
fn istioctl_kinds_and_filters() {
    let pc = |args: &[&str]| {
        let mut a = vec!["pc"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-f", BOOKINFO]);
        let (code, out, err) = meshsim(&a);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    let rows = |out: &str| out.lines().skip(1).count();
    // Substring filters on the cluster name.
    let c = pc(&[
        "c",
        "deploy/sleep",
        "--fqdn",
        "ratings",
        "--subset",
        "v2",
        "--direction",
        "outbound",
        "--port",
        "9080",
    ]);
    assert_eq!(rows(&c), 3, "{c}");
    assert!(c.lines().skip(1).all(|l| l.contains(" v2")), "{c}");
    // Listener type and the short form.
    let l = pc(&["l", "deploy/sleep", "--port", "15006", "--verbose=false"]);
    assert_eq!(l, "ADDRESSES PORT  TYPE\n0.0.0.0   15006 HTTP+TCP\n");
    let tcp = pc(&["listeners", "deploy/sleep", "--type", "tcp"]);
    assert!(
        tcp.contains("Cluster: outbound|443||") && !tcp.contains("Route: "),
        "{tcp}"
    );
    // Endpoints from /clusters: by cluster, with the agent's own clusters.
    let ep = pc(&[
        "ep",
        "deploy/sleep",
        "--cluster",
        "outbound|9080|v3|reviews.default.svc.cluster.local",
    ]);
    assert_eq!(rows(&ep), 1, "{ep}");
    assert!(
        ep.contains(":9080 ") && ep.contains("HEALTHY") && ep.contains("OK"),
        "{ep}"
    );
    let all_ep = pc(&["endpoints", "deploy/sleep"]);
    assert!(all_ep.contains("unix://./etc/istio/proxy/XDS"), "{all_ep}");
    // Secrets: the workload certificate and the mesh root, both valid now.
    let s = pc(&["s", "deploy/sleep"]);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[1].starts_with("default ")
            && lines[1].contains("Cert Chain")
            && lines[1].contains(" true "),
        "{s}"
    );
    assert!(
        lines[2].starts_with("ROOTCA ") && lines[2].contains(" CA ") && lines[2].contains(" true "),
        "{s}"
    );
    // Bootstrap: JSON by default, versions with -o short.
    let b: serde_json::Value = serde_json::from_str(&pc(&["b", "deploy/sleep"])).expect("json");
    assert_eq!(
        b["bootstrap"]["node"]["metadata"]["ISTIO_VERSION"],
        "1.28.0"
    );
    assert_eq!(
        pc(&["bootstrap", "deploy/sleep", "-o", "short"]),
        "Istio Version: 1.28.0\nEnvoy Version: 1.36.0/Clean/RELEASE/BoringSSL\n"
    );
    // YAML and the gateway's routes.
    let y = pc(&[
        "r",
        "deploy/istio-ingressgateway.istio-system",
        "-o",
        "yaml",
        "--name",
        "http.8080",
    ]);
    assert!(
        y.contains("virtualHosts:") && y.contains("prefix: /static"),
        "{y}"
    );
    // `all` with headers.
    let a = pc(&["a", "deploy/sleep", "--with-headers"]);
    for h in [
        "BOOTSTRAP INFO",
        "CLUSTER INFO",
        "LISTENER INFO",
        "ROUTE INFO",
        "SECRET INFO",
        "ENDPOINTS INFO",
    ] {
        assert!(a.contains(&format!("------ {h} ------")), "{h}");
    }
    assert!(a.contains("secret/ROOTCA") && a.contains("endpoint/127.0.0.1:15000"));
}

/// Out of descriptors, `load` says why its calls failed: the limit, the
/// descriptors in use, once per proxy in the proxy's words. The shell
/// lowers the hard limit first, so raising the soft one cannot help.
#[test]
fn load_out_of_file_descriptors_prints_the_hint() {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 120 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "load",
            "-f",
            "scenarios/_shared/sleep.yaml",
            "-f",
            "scenarios/_shared/helloworld.yaml",
            "-c",
            "100",
            "-qps",
            "0",
            "-n",
            "200",
            "-timeout",
            "2s",
            "http://helloworld:5000/hello",
        ])
        .current_dir(root())
        .output()
        .expect("run meshsim under ulimit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("meshsim: open-file limit 120 (hard limit 120)"),
        "{err}"
    );
    assert!(
        err.contains(
            "hint: this process ran out of file descriptors (open-file limit 120, hard limit 120, "
        ),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("meshsim: proxy ") && l.contains("Too many open files")),
        "{err}"
    );
}

/// One request on an open connection; the response's status line and body.
fn request_on(conn: &mut std::net::TcpStream, host: &str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    write!(conn, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send");
    let mut r = BufReader::new(conn.try_clone().expect("clone"));
    let (mut head, mut len) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("head");
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("length");
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("body");
    format!(
        "{}{}",
        head.lines().next().unwrap_or(""),
        String::from_utf8_lossy(&body)
    )
}

/// `meshsim proxy-status` against the running sandbox until every row
/// is SYNCED (or 10 s); the table first seen, and whether it got there.
fn wait_synced(env: &[(&str, &std::path::Path)]) -> (String, bool) {
    let mut first = None;
    for _ in 0..100 {
        let out = Command::new(env!("CARGO_BIN_EXE_meshsim"))
            .arg("proxy-status")
            .envs(env.iter().copied())
            .output()
            .expect("proxy-status");
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        let first = first.get_or_insert_with(|| table.clone()).clone();
        if out.status.success() && table.lines().count() > 1 && !table.contains("STALE") {
            return (first, true);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (first.unwrap_or_default(), false)
}

/// Runs `meshsim ARGS` from the repository root with `yaml` on stdin;
/// exit code, stdout, stderr.
fn meshsim_stdin(
    args: &[&str],
    yaml: &str,
    env: &[(&str, &std::path::Path)],
) -> (i32, String, String) {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("meshsim");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("yaml");
    let out = c.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `meshsim apply|delete -f -` with `yaml` on stdin.
fn change_live(verb: &str, yaml: &str, env: &[(&str, &std::path::Path)]) -> (i32, String, String) {
    meshsim_stdin(&[verb, "-f", "-"], yaml, env)
}

/// Starts `cmd` (a `meshsim sandbox`), reads its stdout until the sleep
/// pod's entry port for helloworld:5000, and keeps draining the rest as a
/// terminal would: the child, the port and the drain thread.
fn sandbox_with_helloworld(
    mut cmd: Command,
) -> (std::process::Child, String, std::thread::JoinHandle<usize>) {
    use std::io::{BufRead, BufReader};
    let mut sandbox = cmd
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sandbox");
    let mut lines = BufReader::new(sandbox.stdout.take().expect("stdout")).lines();
    let port = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.trim()
                .strip_prefix("helloworld.default.svc.cluster.local:5000")
                .and_then(|r| r.split("-> ").nth(1))
                .and_then(|r| r.split_whitespace().next())
                .map(String::from)
        })
        .expect("an entry port for helloworld");
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    (sandbox, port, drain)
}

/// A live sandbox changed through its control plane: `apply -f -` of a
/// VirtualService, a change to it and its `delete`, each pushed after the
/// push delay (proxy-status STALE, then SYNCED) and seen by the next
/// request on a connection opened before; a broken file is rejected whole.
#[test]
fn a_running_sandbox_takes_apply_and_delete_through_its_control_plane() {
    let runtime_dir = tempdir();
    let env = [("XDG_RUNTIME_DIR", runtime_dir.path())];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshsim"));
    cmd.args([
        "sandbox",
        "-f",
        "scenarios/_shared/sleep.yaml",
        "-f",
        "scenarios/_shared/helloworld.yaml",
        "--push-delay",
        "1s",
        "--for",
        "120s",
        "--ports-json",
        &runtime_dir.path().join("ports.json").display().to_string(),
    ])
    .envs(env);
    let (mut sandbox, port, drain) = sandbox_with_helloworld(cmd);
    let ports: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runtime_dir.path().join("ports.json")).expect("ports.json"),
    )
    .expect("json");
    assert_eq!(
        ports["pods"]["sleep-0.default"]["services"]["helloworld.default.svc.cluster.local:5000"],
        serde_json::json!(port),
        "{ports}"
    );
    // `meshsim sandbox ports` asks the running sandbox for the same map.
    let asked = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["sandbox", "ports"])
        .envs(env)
        .output()
        .expect("sandbox ports");
    let asked: serde_json::Value = serde_json::from_slice(&asked.stdout).expect("ports json");
    assert_eq!(asked, ports);
    let mut conn = std::net::TcpStream::connect(&port).expect("connect");
    let host = "helloworld:5000";
    let vs = |subset: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: hello}}\nspec:\n  hosts: [helloworld]\n  http:\n  - route: [{{destination: {{host: helloworld, subset: {subset}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: hello}}\nspec:\n  host: helloworld\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n")
    };
    assert!(request_on(&mut conn, host).starts_with("HTTP/1.1 200"));

    let (code, out, err) = change_live("apply", &vs("v2"), &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("virtualservice.networking.istio.io/hello created"),
        "{out}"
    );
    assert!(err.contains("pushed after 1s"), "{err}");
    let (first, synced) = wait_synced(&env);
    assert!(first.contains("STALE"), "{first}");
    assert!(synced, "never SYNCED");
    for _ in 0..4 {
        let r = request_on(&mut conn, host);
        assert!(r.contains("Hello version: v2"), "{r}");
    }
    // istioctl proxy-config against the live proxy: the applied route.
    let pc = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["proxy-config", "routes", "deploy/sleep"])
        .envs(env)
        .output()
        .expect("proxy-config");
    let routes = String::from_utf8_lossy(&pc.stdout);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("5000 ") && l.contains("hello.default")),
        "{routes}{}",
        String::from_utf8_lossy(&pc.stderr)
    );

    let (code, out, _) = change_live("apply", &vs("v1"), &env);
    assert_eq!(code, 0);
    assert!(
        out.contains("virtualservice.networking.istio.io/hello configured"),
        "{out}"
    );
    assert!(wait_synced(&env).1);
    for _ in 0..4 {
        let r = request_on(&mut conn, host);
        assert!(r.contains("Hello version: v1"), "{r}");
    }

    // A broken file changes nothing.
    let (code, _, err) = change_live("apply", &vs("v2").replace("hosts:", "hostz:"), &env);
    assert_eq!(code, 1);
    assert!(
        err.contains("STDIN:5:") && err.contains("rejected"),
        "{err}"
    );
    assert!(request_on(&mut conn, host).contains("Hello version: v1"));

    let (code, out, err) = change_live("delete", &vs("v1"), &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("virtualservice.networking.istio.io/hello deleted"),
        "{out}"
    );
    assert!(wait_synced(&env).1);
    let seen: std::collections::BTreeSet<bool> = (0..8)
        .map(|_| request_on(&mut conn, host).contains("Hello version: v2"))
        .collect();
    assert_eq!(seen.len(), 2, "both versions again once the route is gone");

    // istioctl analyze against the live mesh: a route to a subset no
    // DestinationRule defines.
    let (code, _, err) = change_live("apply", &vs("v9"), &env);
    assert_eq!(code, 0, "{err}");
    let analyzed = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .arg("analyze")
        .envs(env)
        .output()
        .expect("analyze");
    let out = String::from_utf8_lossy(&analyzed.stdout);
    assert_eq!(analyzed.status.code(), Some(79), "{out}");
    assert!(out.contains("IST0101") && out.contains("v9"), "{out}");
    // kubectl logs against the live mesh: the sleep sidecar's lines.
    let logs = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["logs", "deploy/sleep", "-c", "istio-proxy", "--tail", "3"])
        .envs(env)
        .output()
        .expect("logs");
    let text = String::from_utf8_lossy(&logs.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("\"helloworld:5000\"") && l.contains("outbound|5000||helloworld")),
        "{text}"
    );
    // Ctrl-C (the shell's own `kill`).
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", sandbox.id())])
        .status();
    assert!(sandbox.wait().expect("wait").success());
    let _ = drain.join();
    assert!(
        !runtime_dir.path().join("meshsim/sandbox.json").exists(),
        "state file removed"
    );
}

/// `sandbox --watch`: a file written into the watched directory is
/// applied through the control plane; the next request follows it.
#[test]
fn sandbox_watch_applies_changed_files() {
    let dir = tempdir();
    for f in ["sleep.yaml", "helloworld.yaml"] {
        std::fs::copy(root().join("scenarios/_shared").join(f), dir.path().join(f)).expect("copy");
    }
    let runtime_dir = tempdir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshsim"));
    cmd.args(["sandbox", "--watch", "--for", "60s", "-f"])
        .arg(dir.path())
        .env("XDG_RUNTIME_DIR", runtime_dir.path());
    let (mut sandbox, port, drain) = sandbox_with_helloworld(cmd);
    let mut conn = std::net::TcpStream::connect(&port).expect("connect");
    std::fs::write(
        dir.path().join("route.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hello}\nspec:\n  hosts: [helloworld]\n  http:\n  - route: [{destination: {host: helloworld, subset: v2}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: hello}\nspec:\n  host: helloworld\n  subsets: [{name: v2, labels: {version: v2}}]\n",
    )
    .expect("write");
    let mut seen = Vec::new();
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = (0..4)
            .map(|_| request_on(&mut conn, "helloworld:5000"))
            .collect();
        if seen.iter().all(|r| r.contains("Hello version: v2")) {
            break;
        }
    }
    assert!(
        seen.iter().all(|r| r.contains("Hello version: v2")),
        "{seen:?}"
    );
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", sandbox.id())])
        .status();
    assert!(sandbox.wait().expect("wait").success());
    let _ = drain.join();
}

/// `-f -` reads stdin for every command that takes `-f`, named `STDIN` in
/// diagnostics as kubectl names it.
#[test]
fn dash_f_dash_reads_stdin() {
    let run = |yaml: &str| meshsim_stdin(&["validate", "-f", "-"], yaml, &[]);
    let (code, out, _) = run("apiVersion: v1\nkind: Service\nmetadata: {name: till, namespace: store}\nspec: {ports: [{port: 80, name: http}]}\n");
    assert_eq!(code, 0);
    assert!(out.starts_with("OK: 2 services"), "{out}");
    let (code, _, err) =
        run("apiVersion: v1\nkind: Service\nmetadata: {name: till}\nspec: {portz: []}\n");
    assert_eq!(code, 1);
    assert!(
        err.starts_with("STDIN:4:8: error: spec.portz: unknown field"),
        "{err}"
    );
}

/// `sandbox --port-base N`: the same input gets the same ports, from N up
/// (a base below the kernel's ephemeral range, so no client socket of a
/// concurrent test takes one of them).
#[test]
fn sandbox_port_base_lays_ports_out_deterministically() {
    let dir = tempdir();
    let run = |n: u32| {
        let json = dir.path().join(format!("ports-{n}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_meshsim"))
            .args([
                "sandbox",
                "-f",
                "scenarios/_shared/sleep.yaml",
                "-f",
                "scenarios/_shared/helloworld.yaml",
                "--port-base",
                "23700",
                "--for",
                "1s",
                "--ports-json",
            ])
            .arg(&json)
            .env("XDG_RUNTIME_DIR", dir.path())
            .current_dir(root())
            .output()
            .expect("sandbox");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&json).expect("ports");
        let mut v = serde_json::from_str::<serde_json::Value>(&text).expect("json");
        // The CA's directory is fresh and unpredictable on purpose.
        v["ca"] = serde_json::Value::Null;
        v
    };
    let (first, second) = (run(1), run(2));
    assert_eq!(first, second, "same input, same ports");
    let port = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
            .expect("an address")
    };
    let control = port(&first["control"]);
    let entry = port(
        &first["pods"]["sleep-0.default"]["services"]["helloworld.default.svc.cluster.local:5000"],
    );
    assert!((23700..23800).contains(&control), "{first}");
    assert!(entry > control && entry < 23800, "{first}");
}

/// `meshsim explain` on a mesh unlike the scenarios: the walk names the
/// listener, route, cluster and the server's inbound chain, predicts the
/// status and flag, names the page's section for a documented failure,
/// and `--send` finds the access logs in agreement.
#[test]
fn explain_predicts_and_agrees_with_the_logs() {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(&dir).expect("tmp");
    let mesh = dir.join("mesh.yaml");
    std::fs::write(
        &mesh,
        "apiVersion: v1\nkind: Service\nmetadata: {name: vault, namespace: ledger}\nspec:\n  ports: [{port: 7070, name: http-api, targetPort: 9000}]\n  selector: {app: vault}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: vault, namespace: ledger}\nspec:\n  selector: {matchLabels: {app: vault}}\n  template:\n    metadata: {labels: {app: vault}}\n    spec: {containers: [{name: app, image: example/vault, ports: [{containerPort: 9000}]}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: teller, namespace: ledger}\nspec:\n  selector: {matchLabels: {app: teller}}\n  template:\n    metadata: {labels: {app: teller}}\n    spec: {containers: [{name: app, image: curlimages/curl}]}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vault, namespace: ledger}\nspec:\n  hosts: [vault]\n  http:\n  - match: [{uri: {prefix: /v2}}]\n    route: [{destination: {host: vault}}]\n",
    )
    .expect("write");
    let m = mesh.to_str().expect("utf8");
    let (code, out, err) = meshsim(&[
        "explain",
        "-f",
        m,
        "--from",
        "deploy/teller.ledger",
        "http://vault.ledger:7070/v2/keys",
        "--send",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "teller-0.ledger: listener 0.0.0.0_7070",
        "route configuration \"7070\"",
        "cluster outbound|7070||vault.ledger.svc.cluster.local",
        "vault-0.ledger: inbound capture, listener virtualInbound",
        "prediction: 200; teller-0.ledger logs flags - (via_upstream)",
        "the prediction and the access logs agree",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    // No route for /v1: the documented NR failure, in agreement.
    let (code, out, err) = meshsim(&[
        "explain",
        "-f",
        m,
        "--from",
        "deploy/teller.ledger",
        "http://vault.ledger:7070/v1/keys",
        "--send",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("prediction: 404; teller-0.ledger logs flags NR (route_not_found)"),
        "{out}"
    );
    assert!(
        out.contains("documented failure: \"Requests are rejected by Envoy (NR)\""),
        "{out}"
    );
    assert!(
        out.contains("the prediction and the access logs agree"),
        "{out}"
    );
    // A port the Service does not declare: the sidecar's passthrough
    // accepts, finds nothing listening at the Service address and closes
    // the client (0 UF; curl 52 or 56, as real Envoy's tcp_proxy does).
    let (code, out, err) = meshsim(&[
        "explain",
        "-f",
        m,
        "--from",
        "deploy/teller.ledger",
        "http://vault.ledger:8088/",
        "--send",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "tcp_proxy to PassthroughCluster",
        "the Service declares no port 8088: connection refused",
        "prediction: curl fails: Empty reply from server; teller-0.ledger logs flags UF",
        "the prediction and the access logs agree",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    // STRICT, and a client without a sidecar: the server's inbound has no
    // plaintext chain (NR); the fix is on the client's side, not a
    // DestinationRule's.
    let strict = dir.join("strict.yaml");
    std::fs::write(
        &strict,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: batch}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: cron, namespace: batch}\nspec:\n  selector: {matchLabels: {app: cron}}\n  template:\n    metadata: {labels: {app: cron}}\n    spec: {containers: [{name: app, image: curlimages/curl}]}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: ledger}\nspec: {mtls: {mode: STRICT}}\n",
    )
    .expect("write");
    let (code, out, err) = meshsim(&[
        "explain",
        "-f",
        m,
        "-f",
        strict.to_str().expect("utf8"),
        "--from",
        "deploy/cron.batch",
        "http://vault.ledger:7070/v2/keys",
        "--send",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "vault-0.ledger logs flags NR (filter_chain_not_found)",
        "the client has no sidecar to send mutual TLS",
        "the prediction and the access logs agree",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    assert!(!out.contains("documented failure"), "{out}");
}
