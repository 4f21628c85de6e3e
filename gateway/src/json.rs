//! The JSON body extractor of every route.
//!
//! axum's own `Json` answers rejections in plain text; this one answers in
//! problem+json like the rest of the API: `415` for a body that is not
//! declared as JSON, `413` past the body limit (`HERALD_MAX_EVENT_BYTES`),
//! and `400` for malformed JSON or a value of the wrong shape, naming the
//! offending field by its JSON path.

use std::time::Duration;

use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::error::{FieldProblem, GatewayError};

/// A client that has not sent its whole body by then is holding a
/// connection open for nothing; it is answered `408`.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request body accepted, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A JSON request body.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    BodyLimit: FromRef<S>,
{
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let BodyLimit(limit) = BodyLimit::from_ref(state);
        check_content_type(request.headers().get(header::CONTENT_TYPE))?;
        // Refuse a declared oversize body before reading any of it.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(GatewayError::PayloadTooLarge(limit));
        }
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(request.into_body(), limit).collect());
        let bytes = match read.await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(GatewayError::PayloadTooLarge(limit));
            }
            Ok(Err(_)) => return Err(GatewayError::bad_request("the request body could not be read")),
            Err(_) => return Err(GatewayError::RequestTimeout),
        };
        parse(&bytes).map(Json)
    }
}

fn check_content_type(value: Option<&axum::http::HeaderValue>) -> Result<(), GatewayError> {
    let unsupported = || GatewayError::UnsupportedMediaType("content-type must be application/json".to_owned());
    let value = value.and_then(|v| v.to_str().ok()).ok_or_else(unsupported)?;
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json { Ok(()) } else { Err(unsupported()) }
}

/// Deserializes a body, turning serde's complaint into field problems.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(GatewayError::bad_request("the request body is empty; a JSON object is expected")),
        // serde would also read a struct from an array of its fields; the API speaks objects only.
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(GatewayError::invalid("body", "must be a JSON object"));
        }
        Some(_) => {}
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(from_path_error)?;
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn from_path_error(err: serde_path_to_error::Error<serde_json::Error>) -> GatewayError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = without_position(&inner.to_string());
            let (field, message) = name_field(&path, message);
            GatewayError::invalid_fields(vec![FieldProblem::new(field, message)])
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            malformed(&inner)
        }
    }
}

fn malformed(err: &serde_json::Error) -> GatewayError {
    GatewayError::bad_request(format!("the request body is not valid JSON: {}", without_position(&err.to_string())))
}

/// serde_json appends " at line 1 column 23"; a field path says more.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// For a missing or unknown field serde reports the enclosing object's
/// path; the caller wants the field itself named.
fn name_field(path: &str, message: String) -> (String, String) {
    let parent = if path == "." { "" } else { path };
    for (prefix, explanation) in [("missing field `", "is required"), ("unknown field `", "is not a known field")] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(end) = rest.find('`')
        {
            let name = &rest[..end];
            // An unknown field's path already ends with its name; a missing one's never does.
            let field = if parent.is_empty() || parent == name {
                name.to_owned()
            } else if parent.ends_with(&format!(".{name}")) {
                parent.to_owned()
            } else {
                format!("{parent}.{name}")
            };
            return (field, explanation.to_owned());
        }
    }
    let field = if parent.is_empty() { "body".to_owned() } else { parent.to_owned() };
    (field, message)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        url: String,
        #[serde(default)]
        rate_limit_per_second: Option<u32>,
        #[serde(default)]
        auth: Option<Auth>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Auth {
        Basic {
            #[allow(dead_code)]
            username: String,
        },
    }

    async fn extract(content_type: Option<&str>, body: &str, limit: usize) -> Result<Input, GatewayError> {
        let mut builder = Request::builder().method("POST").uri("/");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        let request = builder.body(Body::from(body.to_owned())).unwrap();
        Json::<Input>::from_request(request, &BodyLimit(limit)).await.map(|Json(v)| v)
    }

    fn field_errors(err: GatewayError) -> Vec<FieldProblem> {
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err}");
        err.problem().errors
    }

    #[tokio::test]
    async fn accepts_json_and_json_suffix_types() {
        let ok = extract(Some("application/json; charset=utf-8"), r#"{"url":"https://x"}"#, 1024).await.unwrap();
        assert_eq!(ok.url, "https://x");
        assert!(extract(Some("application/merge-patch+json"), r#"{"url":"a"}"#, 1024).await.is_ok());
    }

    #[tokio::test]
    async fn other_content_types_are_415() {
        for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let err = extract(ct, r#"{"url":"a"}"#, 1024).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        }
    }

    #[tokio::test]
    async fn oversize_bodies_are_413() {
        let body = format!(r#"{{"url":"{}"}}"#, "x".repeat(2000));
        let err = extract(Some("application/json"), &body, 1024).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn oversize_streamed_bodies_are_413() {
        let chunks: Vec<Result<String, std::io::Error>> = vec![Ok("{\"url\":\"".into()), Ok("y".repeat(4096))];
        let request = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();
        let err = Json::<Input>::from_request(request, &BodyLimit(1024)).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn malformed_json_is_400_without_field() {
        for body in ["{", "{\"url\": }", "{\"url\":\"a\"", "{\"url\":\"a\"} trailing", "", "   "] {
            let err = extract(Some("application/json"), body, 1024).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body}");
            assert!(err.problem().errors.is_empty(), "{body}");
        }
    }

    #[tokio::test]
    async fn shape_errors_name_the_field() {
        let errors = field_errors(extract(Some("application/json"), "{}", 1024).await.unwrap_err());
        assert_eq!(errors, vec![FieldProblem::new("url", "is required")]);

        let errors =
            field_errors(extract(Some("application/json"), r#"{"url":"a","bogus":1}"#, 1024).await.unwrap_err());
        assert_eq!(errors, vec![FieldProblem::new("bogus", "is not a known field")]);

        let errors = field_errors(
            extract(Some("application/json"), r#"{"url":"a","rateLimitPerSecond":"fast"}"#, 1024).await.unwrap_err(),
        );
        assert_eq!(errors[0].field, "rateLimitPerSecond");
        assert!(errors[0].message.contains("invalid type"), "{}", errors[0].message);

        let errors = field_errors(
            extract(Some("application/json"), r#"{"url":"a","auth":{"type":"magic"}}"#, 1024).await.unwrap_err(),
        );
        assert_eq!(errors[0].field, "auth.type");
        assert!(errors[0].message.contains("unknown variant"), "{}", errors[0].message);

        let errors = field_errors(extract(Some("application/json"), "[1]", 1024).await.unwrap_err());
        assert_eq!(errors[0].field, "body");
    }
}
