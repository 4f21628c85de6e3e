//! Path and query extractors whose rejections are problem+json `400`s, and
//! the shared shapes of list calls.
//!
//! Query values are taken as text and parsed here, so a bad `limit` is
//! answered with the field named rather than serde's generic complaint.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use herald_common::ids::is_valid_external_id;
use herald_proto::v1::PageRequest;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::error::GatewayError;

/// Largest page a list call answers.
pub const MAX_LIMIT: u32 = 1000;
/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 50;
/// Longest id accepted in a path; anything longer cannot name a resource.
const MAX_ID_LEN: usize = 128;

/// URL path parameters.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| GatewayError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// The query string.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| GatewayError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// A resource id from the path. Ids are short and URL-safe; anything else
/// names nothing, so it is answered like a missing resource without asking upstream.
pub fn resource_id<'a>(kind: &str, id: &'a str) -> Result<&'a str, GatewayError> {
    if is_valid_external_id(id, MAX_ID_LEN) { Ok(id) } else { Err(GatewayError::not_found(kind)) }
}

/// `?tenant=`: which tenant the admin acts for on tenant-scoped routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantParam {
    /// The tenant the admin acts for (required with the admin token; a tenant key implies its own).
    pub tenant: Option<String>,
}

/// `?limit=&cursor=` of every list call.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn page(&self) -> Result<PageRequest, GatewayError> {
        let limit = match self.limit.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_LIMIT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(GatewayError::invalid("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))),
            },
        };
        let cursor = self.cursor.clone().unwrap_or_default();
        if cursor.len() > 512 {
            return Err(GatewayError::invalid("cursor", "is not a cursor returned by a previous page"));
        }
        Ok(PageRequest { limit, cursor })
    }
}

/// An upstream page's cursor as the API shows it: `null` on the last page.
pub fn next_cursor(page: Option<herald_proto::v1::PageInfo>) -> Option<String> {
    page.map(|p| p.next_cursor).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: Option<&str>) -> Result<PageRequest, GatewayError> {
        PageParams { limit: limit.map(str::to_owned), cursor: None }.page()
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(page(None).unwrap().limit, 50);
        assert_eq!(page(Some("1")).unwrap().limit, 1);
        assert_eq!(page(Some("1000")).unwrap().limit, 1000);
        for bad in ["0", "1001", "-1", "ten", "1.5", "99999999999999999999"] {
            let err = page(Some(bad)).unwrap_err();
            assert_eq!(err.problem().errors[0].field, "limit", "{bad}");
        }
    }

    #[test]
    fn garbage_ids_are_not_found() {
        assert!(resource_id("endpoint", "ep_01hx").is_ok());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            assert_eq!(resource_id("endpoint", bad).unwrap_err().status(), axum::http::StatusCode::NOT_FOUND);
        }
    }
}
