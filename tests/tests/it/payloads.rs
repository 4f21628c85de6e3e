//! Over real gRPC: events published as `google.protobuf.Struct`,
//! subscriptions updated with `UpdateSubscription`; and the
//! `WebHook-Request-Origin` every CloudEvents delivery carries.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{
    CreateEndpointRequest, CreateSubscriptionRequest, CreateTenantRequest, EndpointFormat, EndpointSpec, EventType,
    PublishBatchRequest, PublishRequest, UpdateSubscriptionRequest,
};
use herald_tests::{Receiver, Stack, WEBHOOK_ORIGIN};
use prost_types::value::Kind;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const WAIT: Duration = Duration::from_secs(15);

type Client = RegistryClient<Channel>;

async fn setup(types: &[&str]) -> (Stack, Client) {
    let stack = Stack::start().await;
    let mut client = RegistryClient::new(stack.registry_channel().await);
    client.create_tenant(CreateTenantRequest { id: "acme".into(), name: "Acme".into() }).await.unwrap();
    for name in types {
        let event_type = EventType { name: (*name).into(), description: "x".into(), ..Default::default() };
        client.create_event_type(event_type).await.unwrap();
    }
    (stack, client)
}

async fn endpoint(client: &mut Client, url: &str, format: EndpointFormat) -> String {
    let spec = EndpointSpec { url: url.into(), format: format as i32, ..Default::default() };
    let request = CreateEndpointRequest { tenant: "acme".into(), spec: Some(spec), id: String::new() };
    client.create_endpoint(request).await.unwrap().into_inner().endpoint.unwrap().id
}

async fn subscribe(client: &mut Client, endpoint: &str, types: &[&str], filter: Option<serde_json::Value>) -> String {
    let request = CreateSubscriptionRequest {
        tenant: "acme".into(),
        endpoint_id: endpoint.into(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        filter: filter.map(|f| f.to_string().into_bytes()).unwrap_or_default(),
        metadata: Default::default(),
    };
    client.create_subscription(request).await.unwrap().into_inner().id
}

fn value(kind: Kind) -> prost_types::Value {
    prost_types::Value { kind: Some(kind) }
}

fn structure(pairs: Vec<(&str, Kind)>) -> prost_types::Struct {
    let fields: BTreeMap<String, prost_types::Value> = pairs.into_iter().map(|(k, v)| (k.into(), value(v))).collect();
    prost_types::Struct { fields }
}

fn event(kind: &str) -> PublishRequest {
    PublishRequest { tenant: "acme".into(), r#type: kind.into(), ..Default::default() }
}

/// The fields named by an `INVALID_ARGUMENT`'s bad-request details.
fn violations(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_details_bad_request().unwrap_or_else(|| panic!("no field violations: {status:?}"));
    details.field_violations.into_iter().map(|v| v.field).collect()
}

#[tokio::test]
async fn publish_takes_struct_payloads() {
    let (stack, mut client) = setup(&["order.paid"]).await;
    let receiver = Receiver::start().await;
    let ep = endpoint(&mut client, &receiver.url(), EndpointFormat::Json).await;
    // Integral Struct numbers are JSON integers, so equality filters meet them.
    subscribe(&mut client, &ep, &["order.paid"], Some(json!({"data.n": 3, "resource.org": "tfoinc"}))).await;

    let items = prost_types::ListValue { values: vec![value(Kind::StringValue("sku-1".into()))] };
    let data = structure(vec![
        ("n", Kind::NumberValue(3.0)),
        ("total", Kind::NumberValue(12.5)),
        ("paid", Kind::BoolValue(true)),
        ("note", Kind::NullValue(0)),
        ("items", Kind::ListValue(items)),
    ]);
    let resource = structure(vec![("org", Kind::StringValue("tfoinc".into()))]);
    let request = PublishRequest {
        data_struct: Some(data.clone()),
        resource_struct: Some(resource.clone()),
        ..event("order.paid")
    };
    let answer = client.publish(request).await.unwrap().into_inner();
    assert_eq!(answer.deliveries, 1);
    let got = receiver.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["id"], answer.id.as_str());
    assert_eq!(body["data"], json!({"n": 3, "total": 12.5, "paid": true, "note": null, "items": ["sku-1"]}));
    assert!(body["data"]["n"].is_u64(), "{body}");
    assert!(String::from_utf8_lossy(&got[0].body).contains(r#""n":3,"#), "stored as an integer");

    // Raw JSON and Struct mix across a batch; the filter sees both alike.
    let raw = PublishRequest {
        data: br#"{"n":3}"#.to_vec(),
        resource: br#"{"org":"tfoinc"}"#.to_vec(),
        ..event("order.paid")
    };
    let other = PublishRequest {
        data_struct: Some(structure(vec![("n", Kind::NumberValue(4.0))])),
        resource_struct: Some(resource.clone()),
        ..event("order.paid")
    };
    let batch = client.publish_batch(PublishBatchRequest { events: vec![raw, other] }).await.unwrap().into_inner();
    let counts: Vec<u32> = batch.results.iter().map(|r| r.deliveries).collect();
    assert_eq!(counts, [1, 0]);
    receiver.wait_for(2, WAIT).await;

    // Exactly one of each pair, and only numbers JSON can carry.
    let both = PublishRequest { data: b"{}".to_vec(), data_struct: Some(data.clone()), ..event("order.paid") };
    assert_eq!(violations(&client.publish(both).await.unwrap_err()), ["data_struct"]);
    let both = PublishRequest {
        data_struct: Some(data.clone()),
        resource: b"{}".to_vec(),
        resource_struct: Some(resource),
        ..event("order.paid")
    };
    assert_eq!(violations(&client.publish(both).await.unwrap_err()), ["resource_struct"]);
    assert_eq!(violations(&client.publish(event("order.paid")).await.unwrap_err()), ["data"]);
    let nan = PublishRequest {
        data_struct: Some(structure(vec![("n", Kind::NumberValue(f64::INFINITY))])),
        ..event("order.paid")
    };
    assert_eq!(violations(&client.publish(nan).await.unwrap_err()), ["data_struct"]);
    assert_eq!(receiver.count(), 2);
    stack.stop().await;
}

#[tokio::test]
async fn update_subscription_over_grpc() {
    let (stack, mut client) = setup(&["order.created", "order.shipped"]).await;
    let receiver = Receiver::start().await;
    let ep = endpoint(&mut client, &receiver.url(), EndpointFormat::Json).await;
    let sub = subscribe(&mut client, &ep, &["order.created"], Some(json!({"data.n": 1}))).await;
    let update = |fields: &[&str], types: &[&str], filter: &str| UpdateSubscriptionRequest {
        tenant: "acme".into(),
        id: sub.clone(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        filter: filter.as_bytes().to_vec(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    };

    // Only the named field changes: the filter stays.
    let updated = client.update_subscription(update(&["event_types"], &["order.shipped"], "")).await.unwrap();
    let updated = updated.into_inner();
    assert_eq!(updated.event_types, ["order.shipped"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&updated.filter).unwrap(), json!({"data.n": 1}));
    let publish = |kind: &str, n: u32| PublishRequest { data: format!(r#"{{"n":{n}}}"#).into_bytes(), ..event(kind) };
    assert_eq!(client.publish(publish("order.created", 1)).await.unwrap().into_inner().deliveries, 0);
    assert_eq!(client.publish(publish("order.shipped", 2)).await.unwrap().into_inner().deliveries, 0);
    assert_eq!(client.publish(publish("order.shipped", 1)).await.unwrap().into_inner().deliveries, 1);

    // An empty filter named in `fields` removes it.
    let updated = client.update_subscription(update(&["filter"], &[], "")).await.unwrap().into_inner();
    assert!(updated.filter.is_empty());
    assert_eq!(client.publish(publish("order.shipped", 2)).await.unwrap().into_inner().deliveries, 1);
    receiver.wait_for(2, WAIT).await;

    let refused = client.update_subscription(update(&["endpoint_id"], &[], "")).await.unwrap_err();
    assert_eq!(violations(&refused), ["fields"]);
    let refused = client.update_subscription(update(&["filter"], &[], r#"{"data.n":{"$gt":"x"}}"#)).await.unwrap_err();
    assert_eq!(violations(&refused), ["filter.data.n.$gt"]);
    let missing = UpdateSubscriptionRequest { id: "sub_missing".into(), ..update(&["filter"], &[], "") };
    assert_eq!(client.update_subscription(missing).await.unwrap_err().code(), Code::NotFound);
    let foreign = UpdateSubscriptionRequest { tenant: "globex".into(), ..update(&["filter"], &[], "") };
    assert_eq!(client.update_subscription(foreign).await.unwrap_err().code(), Code::NotFound);
    stack.stop().await;
}

/// Both CloudEvents modes name the origin on every delivery; other formats do not.
#[tokio::test]
async fn cloudevents_deliveries_carry_the_request_origin() {
    let (stack, mut client) = setup(&["job.completed"]).await;
    let receiver = Receiver::start().await;
    for format in [EndpointFormat::Cloudevents, EndpointFormat::CloudeventsBinary, EndpointFormat::Json] {
        let ep = endpoint(&mut client, &receiver.url(), format).await;
        subscribe(&mut client, &ep, &["job.completed"], None).await;
    }
    let request = PublishRequest { data: br#"{"ok":true}"#.to_vec(), ..event("job.completed") };
    assert_eq!(client.publish(request).await.unwrap().into_inner().deliveries, 3);
    let got = receiver.wait_for(3, WAIT).await;
    let mut seen: Vec<(String, Option<String>)> = got
        .iter()
        .map(|r| {
            let kind = r.header("content-type").unwrap_or_default().to_owned();
            (kind, r.header("webhook-request-origin").map(str::to_owned))
        })
        .collect();
    seen.sort();
    let origin = Some(WEBHOOK_ORIGIN.to_owned());
    assert_eq!(
        seen,
        [
            ("application/cloudevents+json".to_owned(), origin.clone()),
            ("application/json".to_owned(), None),
            ("application/json".to_owned(), origin),
        ],
        "binary mode sends the data as application/json, with ce- headers"
    );
    stack.stop().await;
}
