//! Every documented failure that lies in the configuration is reported by
//! `meshsim analyze` with a failure code, and each fix step silences it. The
//! runner checks each state's messages exactly (`analyze:` in the
//! scenario files, `[]` meaning silent) when the scenarios run; this test
//! checks that every shipped scenario declares them and that the
//! declarations cover the page.

use std::path::Path;

/// Failures that are not in the configuration (issue 13): a small sample,
/// push lag, an fd limit, and the Bookinfo baseline (no failure at all).
const NOT_CONFIGURATION: &[&str] = &[
    "weighted-split-needs-samples",
    "route-rules-slow-to-propagate",
    "fd-limit-crash-under-load",
    "bookinfo-request-routing",
];

/// istioctl's own codes that name one of the page's failures.
const ISTIO_FAILURE_CODES: &[&str] = &["IST0138", "IST0140"];

fn failure_code(entry: &str) -> bool {
    let code = entry.split(' ').next().unwrap_or_default();
    code.starts_with("MS") || ISTIO_FAILURE_CODES.contains(&code)
}

#[test]
fn each_configuration_failure_has_a_code_and_each_fix_is_silent() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut checked = 0;
    for path in meshsim_scenario::runner::discover(&root) {
        let sc = meshsim_scenario::runner::parse(&path).expect("scenario parses");
        let general = sc.section.starts_with("(general)");
        let Some(start) = sc.analyze.as_deref() else {
            panic!("{}: declares no `analyze:` (use [] for silent)", sc.name)
        };
        let states: Vec<(&str, &[String])> = std::iter::once(("start", start))
            .chain(sc.steps.iter().filter_map(|s| {
                s.expect
                    .analyze
                    .as_deref()
                    .map(|a| (s.name.as_str(), a))
                    .or_else(|| s.change.as_ref().map(|_| (s.name.as_str(), &[][..])))
            }))
            .collect();
        // A fix removes the failure's findings and adds none: its failure
        // entries are a strict subset of the state before it.
        for pair in states.windows(2) {
            let ((_, before), (step, after)) = (&pair[0], &pair[1]);
            if !step.to_ascii_lowercase().starts_with("fix") {
                continue;
            }
            let fails = |c: &[String]| -> std::collections::BTreeSet<String> {
                c.iter().filter(|c| failure_code(c)).cloned().collect()
            };
            let (b, a) = (fails(before), fails(after));
            assert!(
                a.is_subset(&b) && (a.len() < b.len() || b.is_empty()),
                "{}: the fix step {step:?} reports {a:?} after {b:?}",
                sc.name
            );
        }
        let reported = states
            .iter()
            .any(|(_, c)| c.iter().any(|c| failure_code(c)));
        if general || NOT_CONFIGURATION.contains(&sc.name.as_str()) {
            assert!(
                !reported || general,
                "{}: not a configuration failure, yet {states:?}",
                sc.name
            );
            continue;
        }
        assert!(
            reported,
            "{}: no state reports the failure: {states:?}",
            sc.name
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} page scenarios checked");
}
