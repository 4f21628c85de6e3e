//! The route table and the OpenAPI 3.1 document, built in one pass.
//!
//! Every handler carries `#[utoipa::path(...)]`. [`ApiRouter::route`] takes
//! that generated description and the handler together: the axum route is
//! registered at the documented path and methods, and the same operation is
//! added to the document, so no route can be served undocumented or
//! documented unserved. Routes served by the shared admin router
//! (`/healthz`, `/readyz`, `/metrics`) are added with
//! [`ApiRouter::served_elsewhere`] and checked by a test.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use utoipa::openapi::path::{HttpMethod, Paths};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::{FieldProblem, Problem};

/// The parts of the document that are not routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Webhook notification platform: tenants, event types, endpoints, subscriptions and deliveries.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(Problem, FieldProblem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "tenants", description = "Tenants and their API keys (admin)"),
        (name = "event-types", description = "The event type catalogue. Every installation's holds the operational types `herald.delivery.failed` (data `deliveryId`, `endpointId`, `eventId`, `eventType`, `attempts`, `lastStatusCode`?, `lastError`?), `herald.endpoint.disabled` (`endpointId`, `reason`) and `herald.endpoint.token_failed` (`endpointId`, `error`), which Herald publishes about a tenant's own endpoints and deliveries; subscribe to them like any type."),
        (name = "events", description = "Publishing events (admin) and the event log: a tenant's published events, kept for the event retention"),
        (name = "endpoints", description = "Where a tenant's webhooks are delivered. Endpoint ids are `ep_…`, except those a compatibility profile made, which keep their seed's id: a UUID (seed 002), `s003.{notificationType}.{partner}`, `s004.{company}`; every route takes them alike"),
        (name = "subscriptions", description = "Which events go to which endpoint"),
        (name = "deliveries", description = "Delivery history, retries and recovery"),
        (name = "portal", description = "Sessions of the integrator portal served under `/portal/`"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "seed000", description = "Compatibility profile: seed 000 notifications (subscriber, subscriptions, message types)"),
        (name = "seed002", description = "Compatibility profile: seed 002 webhook registrations"),
        (name = "seed003", description = "Compatibility profile: seed 003 partner callbacks"),
        (name = "seed004", description = "Compatibility profile: seed 004 company webhook")
    )
)]
struct BaseDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("HERALD_ADMIN_TOKEN for the admin, or a tenant API key `hk_…`"))
                    .build(),
            ),
        );
    }
}

/// The error answers every route may give, as problem+json.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Problems {
    /// Invalid input: malformed JSON, failed validation, a refused URL.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No or bad credentials.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The caller's role may not do this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such resource for this caller.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The resource exists already, or was changed concurrently.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// The body is larger than `HERALD_MAX_EVENT_BYTES`.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Over the caller's request rate; see `Retry-After`.
    #[response(status = 429, content_type = "application/problem+json")]
    TooManyRequests(Problem),
    /// A service Herald depends on is down.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// What a `#[utoipa::path]` generates for a handler.
pub trait Documented: utoipa::Path + utoipa::__dev::SchemaReferences {}
impl<T: utoipa::Path + utoipa::__dev::SchemaReferences> Documented for T {}

/// An axum router that documents itself.
pub struct ApiRouter<S> {
    router: Router<S>,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRouter<S> {
    fn default() -> Self {
        ApiRouter { router: Router::new(), paths: Paths::new(), schemas: Vec::new() }
    }
}

fn method_filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

impl<S: Clone + Send + Sync + 'static> ApiRouter<S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `handler` at the path and methods its `#[utoipa::path]` names, and documents it.
    pub fn route<P: Documented, H: Handler<T, S>, T: 'static>(mut self, _doc: P, handler: H) -> Self {
        let path = P::path();
        let methods = P::methods();
        let filter = methods.iter().map(method_filter).reduce(MethodFilter::or).unwrap_or(MethodFilter::GET);
        self.router = self.router.route(&path, on(filter, handler));
        self.document::<P>();
        self
    }

    /// Documents a route that another router (merged later) serves.
    pub fn served_elsewhere<P: Documented>(mut self, _doc: P) -> Self {
        self.document::<P>();
        self
    }

    fn document<P: Documented>(&mut self) {
        self.paths.add_path_operation(P::path(), P::methods(), P::operation());
        P::schemas(&mut self.schemas);
    }

    pub fn merge(mut self, other: ApiRouter<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.merge(other.paths);
        self.schemas.extend(other.schemas);
        self
    }

    /// The router and its document.
    pub fn finish(self) -> (Router<S>, Document) {
        let mut doc = BaseDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.paths = self.paths;
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, schema) in self.schemas {
            components.schemas.entry(name).or_insert(schema);
        }
        components.schemas.entry(Problem::name().into_owned()).or_insert_with(Problem::schema);
        (self.router, doc)
    }
}
