//! The integrator portal: the static page, styles and scripts under
//! `gateway/portal/`, built into the binary and served at `/portal/`.
//! It owns only the assets and their security headers (a strict CSP, no
//! framing, no sniffing); the page itself talks to the `/v1` API with the
//! token its link carries.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy every portal answer carries: scripts and styles from files of
/// this origin only (no inline code, no `eval`), API calls to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// `(file name, content type, bytes)` of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../portal/index.html")),
    ("portal.css", CSS, include_bytes!("../portal/portal.css")),
    ("portal.js", JS, include_bytes!("../portal/portal.js")),
    ("api.js", JS, include_bytes!("../portal/api.js")),
    ("dom.js", JS, include_bytes!("../portal/dom.js")),
    ("views.js", JS, include_bytes!("../portal/views.js")),
    ("endpoint.js", JS, include_bytes!("../portal/endpoint.js")),
    ("forms.js", JS, include_bytes!("../portal/forms.js")),
    ("catalog.js", JS, include_bytes!("../portal/catalog.js")),
    ("chart.js", JS, include_bytes!("../portal/chart.js")),
];

/// `/portal`, `/portal/` and `/portal/{file}`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/portal", get(redirect))
        .route("/portal/", get(|| async { asset("index.html") }))
        .route("/portal/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
}

/// The headers of every portal answer.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn redirect() -> Response {
    secured((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, "/portal/")]).into_response())
}

fn asset(file: &str) -> Response {
    let response = match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => ([(header::CONTENT_TYPE, *content_type)], *bytes).into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "not found\n")
            .into_response(),
    };
    secured(response)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(uri: &str) -> Response {
        let app: Router = router();
        app.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn assert_secured(response: &Response) {
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert_eq!(csp, CONTENT_SECURITY_POLICY);
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn the_index_is_served_with_a_strict_policy() {
        let response = get("/portal/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_secured(&response);
        assert_eq!(response.headers()[header::CONTENT_TYPE], HTML);
        let html = text(response).await;
        assert!(html.contains(r#"<script type="module" src="portal.js"></script>"#), "{html}");
    }

    #[tokio::test]
    async fn the_bare_path_redirects_permanently() {
        let response = get("/portal").await;
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "/portal/");
        assert_secured(&response);
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type() {
        for (name, content_type, bytes) in ASSETS {
            let response = get(&format!("/portal/{name}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], *content_type, "{name}");
            assert_secured(&response);
            assert_eq!(text(response).await.as_bytes(), *bytes, "{name}");
        }
    }

    #[tokio::test]
    async fn unknown_assets_are_404() {
        for uri in ["/portal/nothing.js", "/portal/..%2Fsrc%2Flib.rs", "/portal/index.html.bak"] {
            let response = get(uri).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
            assert_secured(&response);
        }
    }

    /// The assets themselves keep to the policy: no inline code or styles,
    /// no string evaluation, no HTML parsing of data.
    #[test]
    fn assets_keep_to_the_policy() {
        for (name, _, bytes) in ASSETS {
            let text = std::str::from_utf8(bytes).unwrap();
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
                "document.write",
                " style=",
                "onclick=",
            ] {
                assert!(!text.contains(banned), "{name} contains {banned}");
            }
            assert!(text.lines().count() <= 400, "{name} is over 400 lines");
        }
        let (_, _, index) = ASSETS[0];
        let index = std::str::from_utf8(index).unwrap();
        assert_eq!(index.matches("<script").count(), index.matches("<script type=\"module\" src=").count());
    }
}
