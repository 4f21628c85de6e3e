//! The shipped catalogue (`deploy/catalog/`) loads at start-up and again without change.

use herald_common::keys::Keys;
use herald_proto::v1::GetEventTypeRequest;
use herald_proto::v1::get_event_type_request::Key;
use herald_proto::v1::registry_client::RegistryClient;
use herald_registry::Registry;
use herald_registry::catalog::CatalogReport;
use herald_registry::store::Store;
use herald_tests::{Services, Stack, workspace_root};

#[tokio::test]
async fn catalogue_loads_at_start_up_and_reloads_idempotently() {
    let dir = workspace_root().join("deploy/catalog");
    let stack = Stack::start_services_with(Services::REGISTRY, |env| {
        env.set("HERALD_CATALOG_DIR", dir.display().to_string());
    })
    .await;
    let mut client = RegistryClient::new(stack.registry_channel().await);
    let by_code = client.get_event_type(GetEventTypeRequest { key: Some(Key::Code(1)) }).await.unwrap().into_inner();
    assert_eq!(by_code.name, "WorkflowStateChange");
    for name in ["CheckNotification", "USER_PII_UPDATE", "Document"] {
        let found = client.get_event_type(GetEventTypeRequest { key: Some(Key::Name(name.into())) }).await;
        assert!(found.is_ok(), "{name} missing from the catalogue");
    }

    // A second registry starting on the same data changes nothing.
    let store = Store::new(stack.redis().await, Keys::new(stack.prefix.clone()));
    let registry = Registry::new(stack.config.clone(), store);
    let report = registry.load_catalog(&dir).await.unwrap();
    assert_eq!(report.created + report.updated, 0, "{report:?}");
    assert!(report.unchanged >= 17, "{report:?}");
    let _: CatalogReport = report;
    stack.stop().await;
}
