//! The observability pack in `deploy/observability/` speaks of series that
//! exist: every `herald_…` name the Grafana dashboard and the alert rules
//! use is exported by a running stack that has delivered and failed.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_tests::{Receiver, Stack};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Every `herald_[a-z_]+` word in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("herald_") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        // A word that merely ends in "herald_" (e.g. `x_herald_y`) is not a metric name.
        let starts_word = !matches!(rest[..at].chars().last(), Some(c) if c.is_ascii_alphanumeric() || c == '_');
        if starts_word {
            names.insert(tail[..end].trim_end_matches('_').to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Family and series names in a Prometheus text exposition.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| match line.strip_prefix("# TYPE ") {
            Some(typed) => typed.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        })
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn scrape(http: &reqwest::Client, urls: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for url in urls {
        let response = http.get(url).timeout(Duration::from_secs(10)).send().await.unwrap();
        assert!(response.status().is_success(), "{url}: {}", response.status());
        names.extend(exported_names(&response.text().await.unwrap()));
    }
    names
}

#[test]
fn names_are_read_from_queries() {
    let names = metric_names(r#"sum(rate(herald_deliveries_total{outcome="failed"}[5m])) / x_herald_no herald_up_"#);
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["herald_deliveries_total", "herald_up"]);
    let exported = exported_names("# HELP herald_a x\n# TYPE herald_a histogram\nherald_a_bucket{le=\"1\"} 0\nup 1\n");
    assert_eq!(exported.into_iter().collect::<Vec<_>>(), ["herald_a", "herald_a_bucket", "up"]);
}

#[tokio::test]
async fn every_series_the_dashboard_and_alerts_use_is_exported() {
    let dir = herald_tests::workspace_root().join("deploy/observability");
    let mut used = BTreeSet::new();
    for file in ["grafana-dashboard.json", "alerts.yml", "prometheusrule.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        used.extend(metric_names(&text));
    }
    assert!(used.len() >= 10, "too few names found: {used:?}");

    let stack = Stack::start().await;
    let key = stack.tenant_with_key("acme").await;
    let (status, body) = stack.admin_post("/v1/event-types", json!({"name": "order.created"})).await;
    assert_eq!(status, 201, "{body}");
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(500);
    for receiver in [&ok, &failing] {
        let response = stack.tenant(&key, Method::POST, "/v1/endpoints").json(&json!({"url": receiver.url()}));
        let (status, body) = herald_tests::json_answer(response.send().await.unwrap()).await;
        assert_eq!(status, 201, "{body}");
        let subscription = json!({"endpointId": body["id"], "eventTypes": ["*"]});
        let response = stack.tenant(&key, Method::POST, "/v1/subscriptions").json(&subscription);
        assert_eq!(herald_tests::json_answer(response.send().await.unwrap()).await.0, 201);
    }
    let event = json!({"tenant": "acme", "type": "order.created", "data": {"n": 1}});
    let (status, body) = stack.admin_post("/v1/events", event).await;
    assert_eq!(status, 202, "{body}");
    ok.wait_for(1, WAIT).await;
    // The first attempt and its three retries (200ms, 400ms, 800ms in tests).
    failing.wait_for(4, WAIT).await;

    let urls =
        [&stack.registry_admin_url, &stack.dispatch_admin_url, &stack.gateway_url].map(|u| format!("{u}/metrics"));
    // Partition gauges are sampled every few seconds by their owner.
    let deadline = tokio::time::Instant::now() + WAIT;
    let missing = loop {
        let exported = scrape(&stack.http, &urls).await;
        let missing: Vec<&String> = used.iter().filter(|name| !exported.contains(*name)).collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(missing.is_empty(), "used by deploy/observability but not exported: {missing:?}");
    stack.stop().await;
}
