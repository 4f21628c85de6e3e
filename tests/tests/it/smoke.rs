//! The harness itself: Redis starts, receivers record.

use std::time::Duration;

use herald_tests::{Receiver, Reply};

#[tokio::test]
async fn redis_answers() {
    let url = herald_tests::redis_url();
    let mut conn =
        herald_common::redis_conn::connect(&herald_common::redis_conn::RedisTarget::url(url.clone())).await.unwrap();
    herald_common::redis_conn::ping(&mut conn).await.unwrap();
}

#[tokio::test]
async fn receiver_records_and_follows_its_script() {
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500)]);
    let client = reqwest::Client::new();
    let first = client.post(receiver.url()).body("a").send().await.unwrap();
    let second = client.post(receiver.url()).body("b").send().await.unwrap();
    assert_eq!(first.status(), 500);
    assert_eq!(second.status(), 204);
    let got = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(&got[1].body[..], b"b");
}
