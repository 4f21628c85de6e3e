//! The event log (`GET /v1/events`, `/v1/events/{id}`), the new delivery
//! filters, and portal sessions: who may open one, what a read-only one may
//! do, expiry and revocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_tests::{ADMIN_TOKEN, Receiver, Stack};
use reqwest::Method;
use serde_json::json;

use crate::support::{EVENT_TYPE, call, delivery_in, expect, publish, set_up};

#[tokio::test]
async fn the_event_log_lists_a_tenants_events_newest_first_with_filters() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let (key, endpoint) = set_up(&stack, &receiver).await;
    let other = stack.tenant_with_key("other").await;
    let a = call(
        &stack,
        ADMIN_TOKEN,
        Method::POST,
        "/v1/event-types",
        Some(json!({"name": "order.paid", "description": "p"})),
    )
    .await;
    expect(&a, 201, "second type");
    for i in 0..5 {
        expect(&publish(&stack, &format!("e-{i}"), json!({"n": i})).await, 202, "publish");
    }
    let paid =
        json!({"tenant": "acme", "id": "p-1", "type": "order.paid", "data": {"total": 3}, "resource": {"id": "o-1"}});
    expect(&call(&stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(paid)).await, 202, "publish paid");

    let a = call(&stack, &key, Method::GET, "/v1/events", None).await;
    expect(&a, 200, "list");
    let ids: Vec<&str> = a.body["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["p-1", "e-4", "e-3", "e-2", "e-1", "e-0"], "{}", a.raw);
    let first = &a.body["data"][0];
    assert_eq!(first["type"], "order.paid");
    assert_eq!(first["data"], json!({"total": 3}));
    assert_eq!(first["resource"], json!({"id": "o-1"}));
    assert_eq!(first["deliveries"], 1);

    // Pages carry on from their cursor; a type filter reads only that type.
    let a = call(&stack, &key, Method::GET, "/v1/events?limit=4", None).await;
    let cursor = a.body["nextCursor"].as_str().unwrap().to_owned();
    let b = call(&stack, &key, Method::GET, &format!("/v1/events?limit=4&cursor={cursor}"), None).await;
    let rest: Vec<&str> = b.body["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(rest, ["e-1", "e-0"]);
    assert!(b.body["nextCursor"].is_null());
    let a = call(&stack, &key, Method::GET, &format!("/v1/events?type={EVENT_TYPE}&limit=2"), None).await;
    assert_eq!(a.body["data"].as_array().unwrap().len(), 2);
    assert!(a.body["data"].as_array().unwrap().iter().all(|e| e["type"] == EVENT_TYPE));
    let a = call(&stack, &key, Method::GET, "/v1/events?after=2999-01-01T00:00:00Z", None).await;
    assert_eq!(a.body["data"], json!([]));
    let a = call(&stack, &key, Method::GET, "/v1/events?before=2000-01-01T00:00:00Z", None).await;
    assert_eq!(a.body["data"], json!([]));
    expect(&call(&stack, &key, Method::GET, "/v1/events?after=yesterday", None).await, 400, "bad time");
    expect(&call(&stack, &key, Method::GET, "/v1/events?cursor=nope", None).await, 400, "bad cursor");

    // One event with its deliveries; another tenant sees nothing of it.
    delivery_in(&stack, &key, "e-2", "delivered").await;
    let a = call(&stack, &key, Method::GET, "/v1/events/e-2", None).await;
    expect(&a, 200, "get");
    assert_eq!(a.body["data"], json!({"n": 2}));
    assert_eq!(a.body["deliveryRecords"][0]["endpointId"], endpoint.as_str());
    assert_eq!(a.body["deliveryRecords"][0]["status"], "delivered");
    expect(&call(&stack, &other, Method::GET, "/v1/events/e-2", None).await, 404, "other tenant");
    assert_eq!(call(&stack, &other, Method::GET, "/v1/events", None).await.body["data"], json!([]));
    expect(&call(&stack, &key, Method::GET, "/v1/events/nope", None).await, 404, "unknown");
    let a = call(&stack, ADMIN_TOKEN, Method::GET, "/v1/events?tenant=acme&limit=1", None).await;
    assert_eq!(a.body["data"][0]["id"], "p-1");

    // Deliveries filter by event type and creation time.
    delivery_in(&stack, &key, "p-1", "delivered").await;
    let a = call(&stack, &key, Method::GET, "/v1/deliveries?eventType=order.paid", None).await;
    let list = a.body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", a.raw);
    assert_eq!(list[0]["eventId"], "p-1");
    let a = call(&stack, &key, Method::GET, "/v1/deliveries?after=2999-01-01T00:00:00Z", None).await;
    assert_eq!(a.body["data"], json!([]));
    let a = call(&stack, &key, Method::GET, "/v1/deliveries?before=2999-01-01T00:00:00Z&limit=100", None).await;
    assert_eq!(a.body["data"].as_array().unwrap().len(), 6);

    // The endpoint's last hour per minute: every delivery counted once, in the current minute's or the one before.
    for e in ["e-0", "e-1", "e-3", "e-4"] {
        delivery_in(&stack, &key, e, "delivered").await;
    }
    let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{endpoint}/stats"), None).await;
    expect(&a, 200, "stats");
    let minutes = a.body["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let delivered: u64 = minutes.iter().map(|m| m["delivered"].as_u64().unwrap()).sum();
    assert_eq!(delivered, 6, "{}", a.raw);
    assert_eq!(minutes[59]["failed"], 0);
    assert_eq!(a.body["truncated"], false);
    expect(
        &call(&stack, &other, Method::GET, &format!("/v1/endpoints/{endpoint}/stats"), None).await,
        404,
        "foreign stats",
    );
    stack.stop().await;
}

#[tokio::test]
async fn portal_sessions_are_scoped_expire_and_can_be_read_only() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let (key, endpoint) = set_up(&stack, &receiver).await;
    stack.tenant_with_key("other").await;

    // The admin names the tenant; a key opens sessions for its own only.
    let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/portal/sessions", Some(json!({"tenant": "acme"}))).await;
    expect(&a, 201, "admin session");
    let url = a.body["url"].as_str().unwrap();
    let token = a.body["token"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{}/portal/#token={token}", stack.url("").trim_end_matches('/')));
    assert!(a.body["expiresAt"].is_string());
    expect(&call(&stack, ADMIN_TOKEN, Method::POST, "/v1/portal/sessions", Some(json!({}))).await, 400, "no tenant");
    let a = call(&stack, &key, Method::POST, "/v1/portal/sessions", Some(json!({"tenant": "other"}))).await;
    expect(&a, 403, "another tenant");
    let a = call(&stack, &key, Method::POST, "/v1/portal/sessions", Some(json!({"ttlSeconds": 5}))).await;
    expect(&a, 400, "ttl too short");
    assert_eq!(a.body["errors"][0]["field"], "ttlSeconds", "{}", a.raw);
    let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/portal/sessions", Some(json!({"tenant": "ghost"}))).await;
    expect(&a, 404, "unknown tenant");

    // A session acts for its tenant, and cannot open more sessions.
    let a = call(&stack, &token, Method::GET, "/v1/portal/session", None).await;
    expect(&a, 200, "whoami");
    assert_eq!(a.body["tenant"], "acme");
    assert_eq!(a.body["readOnly"], false);
    expect(&call(&stack, &token, Method::GET, &format!("/v1/endpoints/{endpoint}"), None).await, 200, "read");
    let a =
        call(&stack, &token, Method::PATCH, &format!("/v1/endpoints/{endpoint}"), Some(json!({"description": "x"})))
            .await;
    expect(&a, 200, "write");
    expect(
        &call(&stack, &token, Method::POST, "/v1/portal/sessions", Some(json!({}))).await,
        403,
        "session opens session",
    );
    expect(&call(&stack, &token, Method::GET, "/v1/events?tenant=other", None).await, 404, "other tenant");

    // A read-only session reads and changes nothing.
    let a = call(&stack, &key, Method::POST, "/v1/portal/sessions", Some(json!({"readOnly": true, "ttlSeconds": 600})))
        .await;
    expect(&a, 201, "read-only session");
    let read_only = a.body["token"].as_str().unwrap().to_owned();
    let a = call(&stack, &read_only, Method::GET, "/v1/portal/session", None).await;
    assert_eq!(a.body["readOnly"], true);
    assert!(a.body["expiresAt"].as_str().is_some_and(|t| t.starts_with("20")), "{}", a.raw);
    let read_only_id = a.body["sessionId"].as_str().unwrap().to_owned();
    expect(&call(&stack, &read_only, Method::GET, "/v1/endpoints", None).await, 200, "read-only reads");
    for (method, path) in [
        (Method::PATCH, format!("/v1/endpoints/{endpoint}")),
        (Method::DELETE, format!("/v1/endpoints/{endpoint}")),
        (Method::POST, format!("/v1/endpoints/{endpoint}/secret/rotate")),
        (Method::POST, "/v1/endpoints".to_owned()),
    ] {
        let a = call(&stack, &read_only, method.clone(), &path, Some(json!({"description": "x"}))).await;
        expect(&a, 403, &format!("read-only {method} {path}"));
    }
    expect(&call(&stack, &key, Method::GET, &format!("/v1/endpoints/{endpoint}"), None).await, 200, "still there");
    // Signing out is the one change a read-only session may make, and only of itself.
    let path = format!("/v1/portal/sessions/{read_only_id}");
    expect(&call(&stack, &read_only, Method::DELETE, "/v1/portal/sessions/ps_other", None).await, 403, "another");
    expect(&call(&stack, &read_only, Method::DELETE, &path, None).await, 204, "sign out");
    expect(&call(&stack, &read_only, Method::GET, "/v1/endpoints", None).await, 401, "signed out");

    // Revoked: the token stops working at once (this gateway forgets it).
    let session_id = call(&stack, &token, Method::GET, "/v1/portal/session", None).await.body["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    expect(
        &call(&stack, &key, Method::DELETE, &format!("/v1/portal/sessions/{session_id}"), None).await,
        204,
        "revoke",
    );
    expect(&call(&stack, &token, Method::GET, "/v1/endpoints", None).await, 401, "revoked");
    expect(&call(&stack, &key, Method::DELETE, &format!("/v1/portal/sessions/{session_id}"), None).await, 404, "again");

    // Expired: a session of 60 s is refused once its Redis keys are gone.
    let a = call(&stack, &key, Method::POST, "/v1/portal/sessions", Some(json!({"ttlSeconds": 60}))).await;
    let short = a.body["token"].as_str().unwrap().to_owned();
    let mut redis = stack.redis().await;
    let hash = herald_common::crypto::hash_api_key(&short);
    let keys = herald_tests::scan_keys(&mut redis, &format!("{}*apikey:{hash}", stack.prefix)).await;
    assert_eq!(keys.len(), 1);
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query_async(&mut redis).await.unwrap();
    assert!((1..=60_000).contains(&ttl), "a session's key expires with it: {ttl}");
    let _: () = redis::cmd("PEXPIRE").arg(&keys[0]).arg(1).query_async(&mut redis).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    expect(&call(&stack, &short, Method::GET, "/v1/endpoints", None).await, 401, "expired");
    stack.stop().await;
}

#[tokio::test]
async fn an_attempt_shows_the_request_sent_without_its_secrets() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let key = crate::support::tenant_with_event_type(&stack, "acme").await;
    let spec = json!({
        "url": receiver.url(),
        "auth": {"type": "bearer", "token": "t0ps3cret"},
        "headers": {"X-Api-Key": "k3y-value"},
    });
    let endpoint = crate::support::subscribed_endpoint(&stack, &key, spec, &[EVENT_TYPE]).await;
    expect(&publish(&stack, "e-req", json!({"n": 1})).await, 202, "publish");
    let delivery = delivery_in(&stack, &key, "e-req", "delivered").await;
    let request = &delivery["attempts"][0]["request"];
    assert_eq!(request["url"], receiver.url(), "{delivery}");
    let received = receiver.received();
    assert_eq!(request["bodyBytes"], received[0].body.len() as u64);
    let header = |name: &str| {
        request["headers"].as_array().unwrap().iter().find(|h| h["name"] == name).map(|h| h["value"].clone())
    };
    assert_eq!(header("webhook-id"), Some(json!("e-req")));
    // Made from the delivery when the publisher sent none, and rebuilt from it.
    let sent_trace = received[0].header("traceparent").unwrap_or_default().to_owned();
    assert_eq!(header("traceparent"), Some(json!(sent_trace)), "{delivery}");
    let delivery_id = delivery["id"].as_str().unwrap_or_default();
    let trace = format!("{:032x}", herald_common::ids::ulid_bits(delivery_id).unwrap_or_default());
    assert_eq!(sent_trace.split('-').nth(1), Some(trace.as_str()), "{sent_trace}");
    assert_eq!(header("authorization"), Some(json!("[redacted]")));
    assert_eq!(header("x-api-key"), Some(json!("[redacted]")));
    assert_eq!(header("webhook-signature"), Some(json!("[redacted]")));
    assert_eq!(header("content-type"), Some(json!("application/json")));
    let raw = delivery.to_string();
    assert!(!raw.contains("t0ps3cret") && !raw.contains("k3y-value"), "{raw}");
    let _ = endpoint;
    stack.stop().await;
}

#[tokio::test]
async fn a_replay_sends_a_new_endpoint_what_it_missed_and_nothing_twice() {
    let stack = Stack::start().await;
    let first = Receiver::start().await;
    let (key, old_endpoint) = set_up(&stack, &first).await;
    let since = herald_common::time_fmt::rfc3339(herald_common::time_fmt::now());
    for i in 0..3 {
        let data = json!({"n": i, "region": if i == 1 { "us" } else { "eu" }});
        expect(&publish(&stack, &format!("r-{i}"), data).await, 202, "publish");
    }
    first.wait_for(3, std::time::Duration::from_secs(15)).await;

    // A new endpoint, subscribed with a filter, catches up on what matches.
    let late = Receiver::start().await;
    let spec = json!({"url": late.url()});
    let a = call(&stack, &key, Method::POST, "/v1/endpoints", Some(spec)).await;
    let endpoint = a.body["id"].as_str().unwrap().to_owned();
    let sub = json!({"endpointId": endpoint, "eventTypes": [EVENT_TYPE], "filter": {"data.region": "eu"}});
    expect(&call(&stack, &key, Method::POST, "/v1/subscriptions", Some(sub)).await, 201, "subscription");
    let path = format!("/v1/endpoints/{endpoint}/replay");
    let a = call(&stack, &key, Method::POST, &path, Some(json!({"since": since}))).await;
    expect(&a, 202, "replay");
    assert_eq!(a.body["count"], 2, "{}", a.raw);
    let got = late.wait_for(2, std::time::Duration::from_secs(15)).await;
    let mut ids: Vec<String> = got.iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
    ids.sort();
    assert_eq!(ids, ["r-0", "r-2"]);
    // Listed with the event's own deliveries.
    let a = call(&stack, &key, Method::GET, "/v1/events/r-2", None).await;
    let endpoints: Vec<&str> =
        a.body["deliveryRecords"].as_array().unwrap().iter().map(|d| d["endpointId"].as_str().unwrap()).collect();
    assert!(endpoints.contains(&endpoint.as_str()) && endpoints.contains(&old_endpoint.as_str()), "{}", a.raw);

    // Again: it has them all now; the old endpoint had them from the start.
    crate::support::wait_until("replayed deliveries listed", || async {
        let a = call(&stack, &key, Method::GET, &format!("/v1/deliveries?endpointId={endpoint}"), None).await;
        (a.body["data"].as_array().map_or(0, Vec::len) == 2).then_some(())
    })
    .await;
    let a = call(&stack, &key, Method::POST, &path, Some(json!({"since": since}))).await;
    assert_eq!(a.body["count"], 0, "{}", a.raw);
    let old_path = format!("/v1/endpoints/{old_endpoint}/replay");
    assert_eq!(call(&stack, &key, Method::POST, &old_path, Some(json!({"since": since}))).await.body["count"], 0);
    let until_before = json!({"since": since, "until": "2000-01-01T00:00:00Z"});
    assert_eq!(call(&stack, &key, Method::POST, &path, Some(until_before)).await.body["count"], 0);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(late.count(), 2);
    assert_eq!(first.count(), 3);

    expect(&call(&stack, &key, Method::POST, &path, Some(json!({"since": "soon"}))).await, 400, "bad since");
    expect(
        &call(&stack, &key, Method::POST, "/v1/endpoints/ep_nope/replay", Some(json!({"since": since}))).await,
        404,
        "unknown",
    );
    expect(
        &call(&stack, &key, Method::POST, &format!("/v1/endpoints/{endpoint}/deactivate"), None).await,
        200,
        "deactivate",
    );
    expect(&call(&stack, &key, Method::POST, &path, Some(json!({"since": since}))).await, 409, "inactive");
    stack.stop().await;
}
