//! The Grafana dashboard (`docs/grafana/openai-gateway.json`) names only metrics and labels
//! the gateway exports, and uses each metric. (`tests/prometheus.rs` runs every one of its
//! queries against a real Prometheus.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use tower_openai::group::names as group_names;
use tower_openai::observe::names;

/// The labels the metrics carry (`le`: a histogram bucket's bound).
const LABELS: &[&str] = &[
    "route",
    "model",
    "result",
    "connection",
    "status",
    "user",
    "direction",
    "outcome",
    "kind",
    "le",
];

/// Identifiers of `text` (letters, digits, `_`).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

#[test]
fn every_query_names_only_exported_metrics_and_labels_and_every_metric_is_shown() {
    let queries = common::dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let exported: Vec<&str> = names::ALL.iter().chain(group_names::ALL).copied().collect();
    let mut used = BTreeSet::new();
    for q in &queries {
        for word in words(q).filter(|w| w.starts_with("gateway_")) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .filter(|b| exported.contains(b))
                .unwrap_or(word);
            assert!(exported.contains(&base), "{word} in {q} is not exported");
            used.insert(base);
        }
        // Label names: in `by (…)` groupings and `{label=…}` matchers.
        for group in q.split("by (").skip(1) {
            let inside = group.split(')').next().unwrap();
            for label in words(inside) {
                assert!(LABELS.contains(&label), "label {label} in {q}");
            }
        }
        for matcher in q.split('{').skip(1) {
            let inside = matcher.split('}').next().unwrap();
            for pair in inside.split(',') {
                let label = pair.split(['=', '!']).next().unwrap().trim();
                assert!(LABELS.contains(&label), "label {label:?} in {q}");
            }
        }
    }
    let unused: Vec<_> = exported.iter().filter(|n| !used.contains(*n)).collect();
    assert!(unused.is_empty(), "metrics no panel shows: {unused:?}");
}
