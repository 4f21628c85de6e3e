//! The gateway's REST API over HTTP: one request shape, problem+json
//! answers turned into [`CliError::Api`], connection failures into
//! [`CliError::Unreachable`], and list calls followed across pages.
//!
//! Bodies are serialised here and query strings built with `url`, so only
//! reqwest's core API is used.

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use url::Url;

use crate::config::Settings;
use crate::error::CliError;

/// Largest page the gateway serves.
const MAX_PAGE: u32 = 1000;

#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    settings: Settings,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client, CliError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("herald-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.timeout.min(std::time::Duration::from_secs(10)))
            .timeout(settings.timeout)
            .build()
            .map_err(|e| CliError::usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client { http, settings })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A request to the path made of `segments` (each percent-encoded).
    pub fn call<I, S>(&self, method: Method, segments: I) -> Call<'_>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Call {
            client: self,
            method,
            segments: segments.into_iter().map(|s| s.as_ref().to_owned()).collect(),
            query: Vec::new(),
            body: None,
        }
    }

    /// Every item of a list call, following `nextCursor` until `limit` items.
    pub async fn list(&self, call: Call<'_>, limit: u32) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let want = limit.saturating_sub(items.len() as u32).min(MAX_PAGE);
            let mut page = call.clone().query("limit", want.to_string());
            if let Some(cursor) = &cursor {
                page = page.query("cursor", cursor);
            }
            let answer = page.send().await?.unwrap_or(Value::Null);
            let data = match answer.get("data") {
                Some(Value::Array(data)) => data.clone(),
                _ => return Err(CliError::Answer(format!("a list without `data`: {answer}"))),
            };
            let got = data.len();
            items.extend(data.into_iter().take(limit as usize - items.len()));
            cursor = answer.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() || got == 0 || items.len() >= limit as usize {
                return Ok(items);
            }
        }
    }
}

/// One request being built.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    client: &'a Client,
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Call<'_> {
    pub fn query(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    pub fn query_opt(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.query(name, v),
            None => self,
        }
    }

    /// Adds `?tenant=` when one is configured: tenant-scoped routes need it
    /// with the admin token, and a tenant key accepts its own.
    pub fn scoped(self) -> Self {
        let tenant = self.client.settings.tenant.clone();
        self.query_opt("tenant", tenant.as_deref())
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self
    }

    fn url(&self) -> Result<Url, CliError> {
        let base = &self.client.settings.url;
        let mut url = Url::parse(base).map_err(|e| CliError::usage(format!("the gateway URL {base:?}: {e}")))?;
        {
            let mut path =
                url.path_segments_mut().map_err(|()| CliError::usage(format!("{base:?} cannot be a base URL")))?;
            path.pop_if_empty();
            path.extend(&self.segments);
        }
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        Ok(url)
    }

    /// Sends the request; `None` for an answer without a body (`204`).
    pub async fn send(self) -> Result<Option<Value>, CliError> {
        let url = self.url()?;
        let mut request = self.client.http.request(self.method.clone(), url.clone());
        request = request.header(ACCEPT, "application/json, application/problem+json");
        if let Some(token) = &self.client.settings.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| CliError::usage("the token holds characters a header cannot carry"))?;
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(body) = self.body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request.send().await.map_err(|e| unreachable(&self.client.settings.url, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unreachable(&self.client.settings.url, &e))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| CliError::Answer(format!("{status} with a body that is not JSON: {}", snippet(&bytes))));
        }
        Err(problem(status, &bytes))
    }
}

fn unreachable(url: &str, error: &reqwest::Error) -> CliError {
    let reason = if error.is_timeout() {
        "no answer in time".to_owned()
    } else {
        // The innermost cause names what went wrong (refused, no such host).
        let mut source: &dyn std::error::Error = error;
        while let Some(next) = source.source() {
            source = next;
        }
        source.to_string()
    };
    CliError::Unreachable { url: url.to_owned(), reason }
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_owned()
}

/// An error answer: the problem's `detail` (or `title`) and field errors.
fn problem(status: reqwest::StatusCode, bytes: &[u8]) -> CliError {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let text = |key: &str| body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let detail = text("detail")
        .or_else(|| text("title"))
        .or_else(|| Some(snippet(bytes)).filter(|s| !s.is_empty()))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let fields = match body.get("errors") {
        Some(Value::Array(errors)) => errors
            .iter()
            .filter_map(|e| {
                let field = e.get("field")?.as_str()?.to_owned();
                let message = e.get("message")?.as_str()?.to_owned();
                Some((field, message))
            })
            .collect(),
        _ => Vec::new(),
    };
    CliError::Api { status: status.as_u16(), detail, fields }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn client(url: &str, tenant: Option<&str>) -> Client {
        Client::new(Settings {
            url: url.into(),
            token: None,
            tenant: tenant.map(str::to_owned),
            timeout: std::time::Duration::from_secs(1),
        })
        .unwrap()
    }

    #[test]
    fn urls_encode_segments_and_keep_a_base_path() {
        let c = client("https://h.example/herald/", Some("acme"));
        let url = c.call(Method::GET, ["v1", "endpoints", "a/b c"]).scoped().query("limit", "5").url().unwrap();
        assert_eq!(url.as_str(), "https://h.example/herald/v1/endpoints/a%2Fb%20c?tenant=acme&limit=5");
        let url = client("http://localhost:8080", None).call(Method::GET, ["v1", "tenants"]).scoped().url().unwrap();
        assert_eq!(url.as_str(), "http://localhost:8080/v1/tenants");
    }

    #[test]
    fn problems_keep_detail_title_and_fields() {
        let body = br#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"url: is required",
            "errors":[{"field":"url","message":"is required"}]}"#;
        match problem(reqwest::StatusCode::BAD_REQUEST, body) {
            CliError::Api { status, detail, fields } => {
                assert_eq!((status, detail.as_str()), (400, "url: is required"));
                assert_eq!(fields, vec![("url".to_owned(), "is required".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        let err = problem(reqwest::StatusCode::FORBIDDEN, br#"{"title":"Forbidden","detail":""}"#);
        assert_eq!(err.to_string(), "Forbidden");
        assert_eq!(problem(reqwest::StatusCode::BAD_GATEWAY, b"").to_string(), "Bad Gateway");
    }
}
