//! An endpoint's `auth` as the REST API spells it: what integrators send
//! (with secrets) and what answers show (without them). Seed profiles
//! that take Herald's own `auth` reuse both.

use herald_proto::v1;
use herald_proto::v1::endpoint_auth::Kind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How an OAuth client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// `client_secret_basic` (the default); refused as `invalid_client`, the
    /// client is tried once more as `client_secret_post`.
    Basic,
    /// `client_secret_post`.
    Post,
}

impl ClientAuth {
    fn name(self) -> &'static str {
        match self {
            ClientAuth::Basic => "basic",
            ClientAuth::Post => "post",
        }
    }
}

/// How Herald authenticates to the endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthInput {
    None,
    Basic(BasicAuthInput),
    Bearer(BearerAuthInput),
    Oauth2ClientCredentials(OAuth2Input),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuthInput {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BearerAuthInput {
    pub token: String,
}

/// OAuth 2.0 client credentials grant (RFC 6749 §4.4).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuth2Input {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: Option<ClientAuth>,
}

impl AuthInput {
    pub(crate) fn into_wire(self) -> Option<v1::EndpointAuth> {
        let kind = match self {
            AuthInput::None => return None,
            AuthInput::Basic(BasicAuthInput { username, password }) => {
                Kind::Basic(v1::endpoint_auth::Basic { username, password })
            }
            AuthInput::Bearer(BearerAuthInput { token }) => Kind::Bearer(v1::endpoint_auth::Bearer { token }),
            AuthInput::Oauth2ClientCredentials(OAuth2Input {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
                client_auth,
            }) => Kind::Oauth2ClientCredentials(v1::endpoint_auth::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope: scope.unwrap_or_default(),
                audience: audience.unwrap_or_default(),
                client_auth: client_auth.unwrap_or(ClientAuth::Basic).name().to_owned(),
            }),
        };
        Some(v1::EndpointAuth { kind: Some(kind) })
    }
}

/// The endpoint's authentication, without passwords, tokens or client secrets.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthView {
    None,
    Basic { username: String },
    Bearer,
    Oauth2ClientCredentials(OAuth2View),
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2View {
    pub token_url: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
}

impl AuthView {
    pub(crate) fn from_wire(auth: Option<v1::EndpointAuth>) -> AuthView {
        match auth.and_then(|a| a.kind) {
            None => AuthView::None,
            Some(Kind::Basic(v1::endpoint_auth::Basic { username, password: _ })) => AuthView::Basic { username },
            Some(Kind::Bearer(v1::endpoint_auth::Bearer { token: _ })) => AuthView::Bearer,
            Some(Kind::Oauth2ClientCredentials(v1::endpoint_auth::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret: _,
                scope,
                audience,
                client_auth,
            })) => AuthView::Oauth2ClientCredentials(OAuth2View {
                token_url,
                client_id,
                scope: Some(scope).filter(|s| !s.is_empty()),
                audience: Some(audience).filter(|s| !s.is_empty()),
                client_auth: if client_auth == "post" { ClientAuth::Post } else { ClientAuth::Basic },
            }),
        }
    }
}
