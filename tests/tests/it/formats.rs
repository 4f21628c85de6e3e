//! Every body format and signature, sent for real and judged by the
//! reference libraries receivers use (`tests/judges/judge.py`):
//! Standard Webhooks signatures (also with two signatures during a secret
//! rotation) and CloudEvents in structured and binary content mode.

use std::sync::Arc;
use std::time::Duration;

use herald_common::crypto::{SecretBox, random_secret};
use herald_common::endpoint_secrets as sealing;
use herald_common::model::{
    ClientAuth, EndpointRecord, EndpointStatus, Format, Ordering, SigningSecret, StoredAuth, StoredEvent,
};
use herald_common::url_policy::UrlPolicy;
use herald_common::{ids, time_fmt};
use herald_dispatch::send::attempt::PreparedEndpoint;
use herald_dispatch::send::oauth::TokenCache;
use herald_dispatch::send::outcome::Verdict;
use herald_dispatch::send::render::LoadedEvent;
use herald_tests::{Received, Receiver, Reply, TokenServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
/// `WebHook-Request-Origin` of these endpoints.
const ORIGIN: &str = "webhooks.herald.test";

fn policy() -> UrlPolicy {
    UrlPolicy { allow_private_networks: true, allow_http: true, ..UrlPolicy::default() }
}

fn client() -> reqwest::Client {
    herald_dispatch::send::http_client::build(policy(), Duration::from_secs(5)).unwrap()
}

fn endpoint(url: &str, format: Format, secrets: &SecretBox, signing: &[(&str, Option<i64>)]) -> EndpointRecord {
    let id = ids::new_id(ids::ENDPOINT);
    EndpointRecord {
        tenant: "acme".into(),
        url: url.into(),
        description: String::new(),
        auth: StoredAuth::None,
        format,
        template: None,
        headers: sealing::seal_headers(secrets, &id, [("X-Partner".to_owned(), "p-42".to_owned())]),
        rate_limit_per_second: None,
        max_in_flight: None,
        ordering: Ordering::None,
        metadata: Default::default(),
        max_batch_size: Some(10),
        handshake: false,
        retry: None,
        status: EndpointStatus::Active,
        disabled_reason: None,
        signing_secrets: signing
            .iter()
            .map(|(secret, expires_at)| SigningSecret {
                secret: secrets.seal(secret, sealing::binding(&id, sealing::SIGNING_SECRET)),
                expires_at: *expires_at,
            })
            .collect(),
        created_at: 0,
        updated_at: 0,
        generation: String::new(),
        activated_at: None,
        id,
    }
}

fn event(id: &str, event_type: &str) -> Arc<LoadedEvent> {
    Arc::new(
        LoadedEvent::from_event(StoredEvent {
            id: id.into(),
            event_type: event_type.into(),
            timestamp: time_fmt::rfc3339(time_fmt::now()),
            resource: Some(json!({"orgShortName": "tfoinc", "locRef": "fdmnh144"})),
            data: json!({"status": "Submitted", "userAccessCode": "u-1", "total": 12.5, "note": "naïve ☃"}),
        })
        .unwrap(),
    )
}

/// A captured request in the judge's input shape.
fn judged(r: &Received, mode: &str, secrets: &[&str]) -> Value {
    json!({
        "headers": r.headers,
        "body": String::from_utf8(r.body.to_vec()).unwrap(),
        "secrets": secrets,
        "mode": mode,
    })
}

/// Runs the outside judge; panics with its report unless every request was
/// judged as expected.
async fn judge(requests: &[Value]) -> Value {
    let python = herald_tests::python();
    assert!(python.exists(), "{} is missing: run deploy/test.sh (it installs the judges)", python.display());
    let dir = std::env::temp_dir().join(format!("herald-judge-{}", ids::new_id("")));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("requests.json");
    std::fs::write(&input, serde_json::to_vec(requests).unwrap()).unwrap();
    let script = herald_tests::workspace_root().join("tests/judges/judge.py");
    let out = tokio::process::Command::new(&python).arg(&script).arg(&input).output().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "judge refused the requests:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test]
async fn every_format_is_signed_and_well_formed() {
    let receiver = Receiver::start().await;
    let secrets = SecretBox::ephemeral();
    let secret = random_secret("whsec_");
    let (client, tokens) = (client(), TokenCache::new());
    let signing = [(secret.as_str(), None)];

    let mut template_ep = endpoint(&receiver.url(), Format::Template, &secrets, &signing);
    template_ep.template = Some(json!({"id": "$.id", "event": "$.type", "eventDate": "$.time", "order": "$.data"}));
    let cases = [
        (endpoint(&receiver.url(), Format::Json, &secrets, &signing), vec![event("evt_json", "order.created")]),
        (endpoint(&receiver.url(), Format::Cloudevents, &secrets, &signing), vec![event("evt_ces", "order.created")]),
        (
            endpoint(&receiver.url(), Format::CloudeventsBinary, &secrets, &signing),
            vec![event("evt_ceb", "order.updated")],
        ),
        (
            endpoint(&receiver.url(), Format::Envelope, &secrets, &signing),
            vec![event("evt_env1", "CheckNotification"), event("evt_env2", "CheckNotification")],
        ),
        (template_ep, vec![event("evt_tpl", "USER_PII_UPDATE")]),
    ];
    for (n, (record, events)) in cases.iter().enumerate() {
        let ep = PreparedEndpoint::prepare(record, &secrets, &policy(), ORIGIN).unwrap();
        let msg_id = format!("msg_{n}");
        let out = ep.attempt(&client, &tokens, events, &msg_id, None).await;
        assert_eq!(out.verdict, Verdict::Delivered, "{:?}: {out:?}", record.format);
    }
    let got = receiver.wait_for(cases.len(), WAIT).await;
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("user-agent"), Some(herald_common::USER_AGENT));
        assert_eq!(r.header("x-partner"), Some("p-42"));
    }

    // CloudEvents deliveries name their origin (a DNS name, which the judge
    // checks too); the other formats have no such header.
    let origins: Vec<Option<&str>> = got.iter().map(|r| r.header("webhook-request-origin")).collect();
    assert_eq!(origins, [None, Some(ORIGIN), Some(ORIGIN), None, None]);

    // json: the stored event, byte for byte.
    assert_eq!(got[0].body, cases[0].1[0].raw);
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    // cloudevents: structured.
    assert_eq!(got[1].header("content-type"), Some("application/cloudevents+json"));
    assert_eq!(got[1].json()["data"]["status"], "Submitted");
    // cloudevents-binary: data in the body, attributes in headers.
    assert_eq!(got[2].json(), cases[2].1[0].event().data);
    assert_eq!(got[2].header("ce-id"), Some("evt_ceb"));
    // envelope: seed 000's message list, both events in one body.
    let envelope = got[3].json();
    let messages = envelope["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    for (message, loaded) in messages.iter().zip(&cases[3].1) {
        let e = loaded.event();
        assert_eq!(
            message,
            &json!({
                "id": e.id,
                "creationDate": e.timestamp,
                "messageType": {"id": "CheckNotification"},
                "resource": e.resource,
                "data": e.data,
            })
        );
    }
    // template: seed 004's body.
    let e = cases[4].1[0].event();
    assert_eq!(
        got[4].json(),
        json!({"id": "evt_tpl", "event": "USER_PII_UPDATE", "eventDate": e.timestamp, "order": e.data})
    );

    let mut requests = vec![
        judged(&got[0], "webhook", &[&secret]),
        judged(&got[1], "cloudevents-structured", &[&secret]),
        judged(&got[2], "cloudevents-binary", &[&secret]),
        judged(&got[3], "webhook", &[&secret]),
        judged(&got[4], "webhook", &[&secret]),
    ];
    requests[1]["expect"] = json!({"id": "evt_ces", "type": "order.created", "source": "/herald/tenants/acme"});
    requests[2]["expect"] = json!({"id": "evt_ceb", "type": "order.updated", "source": "/herald/tenants/acme"});
    // The judge must also be able to say no: a body changed after signing
    // and a secret that did not sign are both rejected.
    let mut tampered = judged(&got[0], "webhook", &[&secret]);
    tampered["body"] = json!(String::from_utf8(got[0].body.to_vec()).unwrap().replace("Submitted", "Cancelled"));
    tampered["expectValid"] = json!(false);
    let mut stranger = judged(&got[0], "webhook", &[&random_secret("whsec_")]);
    stranger["expectValid"] = json!(false);
    requests.extend([tampered, stranger]);

    let report = judge(&requests).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["results"][1]["ce"]["specversion"], "1.0");
    assert_eq!(report["results"][2]["ce"]["source"], "/herald/tenants/acme");
}

#[tokio::test]
async fn both_secrets_verify_during_a_rotation() {
    let receiver = Receiver::start().await;
    let secrets = SecretBox::ephemeral();
    let (new, old, expired) = (random_secret("whsec_"), random_secret("whsec_"), random_secret("whsec_"));
    let in_an_hour = time_fmt::now_millis() + 3_600_000;
    let record = endpoint(
        &receiver.url(),
        Format::Cloudevents,
        &secrets,
        &[(&new, None), (&old, Some(in_an_hour)), (&expired, Some(time_fmt::now_millis() - 1))],
    );
    let ep = PreparedEndpoint::prepare(&record, &secrets, &policy(), ORIGIN).unwrap();
    let out = ep.attempt(&client(), &TokenCache::new(), &[event("evt_rot", "order.created")], "msg_rot", None).await;
    assert_eq!(out.verdict, Verdict::Delivered, "{out:?}");
    let got = receiver.wait_for(1, WAIT).await;
    let signatures = got[0].header("webhook-signature").unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");

    let mut with_expired = judged(&got[0], "webhook", &[&expired]);
    with_expired["expectValid"] = json!(false);
    let report = judge(&[
        judged(&got[0], "cloudevents-structured", &[&new, &old]),
        judged(&got[0], "webhook", &[&new]),
        judged(&got[0], "webhook", &[&old]),
        with_expired,
    ])
    .await;
    assert_eq!(report["results"][0]["secretsVerified"], 2, "{report}");
    assert_eq!(report["results"][0]["signatures"], 2, "{report}");
}

/// Seed 001: an OAuth client-credentials subscriber receiving CloudEvents.
#[tokio::test]
async fn oauth_cloudevents_subscriber_gets_a_fresh_token_after_401() {
    let receiver = Receiver::start().await;
    let tokens_server = TokenServer::start().await;
    let secrets = SecretBox::ephemeral();
    let secret = random_secret("whsec_");
    let mut record = endpoint(&receiver.url(), Format::Cloudevents, &secrets, &[(&secret, None)]);
    record.auth = StoredAuth::Oauth2ClientCredentials {
        token_url: tokens_server.url(),
        client_id: "herald".into(),
        client_secret: secrets.seal("client-secret", sealing::binding(&record.id, sealing::CLIENT_SECRET)),
        scope: Some("notifications".into()),
        audience: None,
        client_auth: ClientAuth::Post,
    };
    let ep = PreparedEndpoint::prepare(&record, &secrets, &policy(), ORIGIN).unwrap();
    let (client, tokens) = (client(), TokenCache::new());

    receiver.script([Reply::status(401), Reply::status(202)]);
    let out = ep.attempt(&client, &tokens, &[event("evt_oauth", "job.completed")], "msg_oauth", None).await;
    assert_eq!(out.verdict, Verdict::Delivered, "{out:?}");
    assert!(out.token_refreshed);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(got[1].header("authorization"), Some("Bearer tok-2"));
    assert_eq!(tokens_server.requests(), 2);
    let (_, form) = &tokens_server.seen()[0];
    assert!(form.contains("grant_type=client_credentials") && form.contains("client_id=herald"), "{form}");

    // The fresh token is cached for the next delivery.
    let out = ep.attempt(&client, &tokens, &[event("evt_oauth2", "job.completed")], "msg_oauth2", None).await;
    assert_eq!((out.verdict, out.token_refreshed), (Verdict::Delivered, false));
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[2].header("authorization"), Some("Bearer tok-2"));
    assert_eq!(tokens_server.requests(), 2);

    let report = judge(&[judged(&got[1], "cloudevents-structured", &[&secret])]).await;
    assert_eq!(report["results"][0]["ce"]["id"], "evt_oauth", "{report}");

    // A token endpoint that refuses the client is a retried failure that says why.
    tokens_server.fail_with(401, "invalid_client");
    tokens.invalidate("tok-2");
    let out = ep.attempt(&client, &tokens, &[event("evt_oauth3", "job.completed")], "msg_oauth3", None).await;
    assert_eq!(out.verdict, Verdict::Retry);
    assert_eq!(out.error.as_deref(), Some("token endpoint: invalid_client (401)"));
    assert_eq!(tokens.last_error().unwrap().code(), Some("invalid_client"));
    assert_eq!(receiver.count(), 3);
}

#[tokio::test]
async fn huge_answers_are_cut_and_retry_after_is_honoured() {
    let receiver = Receiver::start().await;
    let secrets = SecretBox::ephemeral();
    let record = endpoint(&receiver.url(), Format::Json, &secrets, &[(&random_secret("whsec_"), None)]);
    let ep = PreparedEndpoint::prepare(&record, &secrets, &policy(), ORIGIN).unwrap();
    let (client, tokens) = (client(), TokenCache::new());
    receiver.script([
        Reply::status(500).body(&"x".repeat(5 * 1024 * 1024)),
        Reply::status(503).header("retry-after", "42"),
        Reply::status(410),
    ]);
    let events = [event("evt_x", "order.created")];
    let out = ep.attempt(&client, &tokens, &events, "m1", None).await;
    assert_eq!((out.verdict, out.status_code, out.response_body.len()), (Verdict::Retry, Some(500), 1024));
    let out = ep.attempt(&client, &tokens, &events, "m1", None).await;
    assert_eq!(out.verdict, Verdict::RetryAfter(Duration::from_secs(42)));
    let out = ep.attempt(&client, &tokens, &events, "m1", None).await;
    assert_eq!(out.verdict, Verdict::Gone);
    let got = receiver.wait_for(3, WAIT).await;
    assert!(got.iter().all(|r| r.header("webhook-id") == Some("m1")), "the same id on every retry");
}
