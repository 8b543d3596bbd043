//! Extractors whose rejections come back as [`ApiError`], and who is
//! calling: the bearer token of a request and the operator.

use crate::error::ApiError;
use accord_crypto::token::TokenHash;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::future::Future;

/// `Json` whose rejections come back as [`ApiError`].
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path` whose rejections come back as [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejections come back as [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// An optional JSON body: an empty body gives `None`; anything else must
/// be `application/json` and parse, with the same errors as [`Json`].
pub struct OptionalJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            });
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::payload_too_large())?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        if !json_type {
            return Err(ApiError::unsupported_media_type());
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("invalid JSON body: {e}"),
                )
            })
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// What a service's state tells the [`Admin`] extractor.
pub trait AdminAuth: Send + Sync {
    /// Hash of the operator's admin token.
    fn admin_token(&self) -> &TokenHash;
    /// Whether `token` is another valid credential of this service: then a
    /// call to an admin endpoint is forbidden (403), else unauthenticated
    /// (401).
    fn is_credential(&self, token: &str) -> impl Future<Output = Result<bool, ApiError>> + Send;
}

/// The operator: the request carries the admin token.
#[derive(Debug)]
pub struct Admin;

impl<S: AdminAuth> FromRequestParts<S> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        if TokenHash::of(token) == *state.admin_token() {
            return Ok(Admin);
        }
        if state.is_credential(token).await? {
            Err(ApiError::admin_required())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`HttpSpec::trusted_proxies`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub std::sync::Arc<Vec<std::net::IpAddr>>);

/// The caller's address, for limits per client: the TCP peer, unless the
/// peer is a trusted proxy; then the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy (the one the
/// first trusted proxy saw). Anyone can write `X-Forwarded-For`, so it
/// is read only from a trusted peer. `None` when the server was not
/// started by [`serve`](crate::serve) (no peer address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let trusted = parts
            .extensions
            .get::<TrustedProxies>()
            .cloned()
            .unwrap_or_default();
        Ok(ClientAddr(peer.map(|p| {
            client_of(
                p,
                &trusted.0,
                parts.headers.get_all("x-forwarded-for").iter(),
            )
        })))
    }
}

fn client_of<'a>(
    peer: std::net::IpAddr,
    trusted: &[std::net::IpAddr],
    forwarded: impl DoubleEndedIterator<Item = &'a axum::http::HeaderValue>,
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = forwarded
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::client_of;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxy = ip("10.0.0.2");
        let xff = [HeaderValue::from_static("203.0.113.9, 198.51.100.1")];
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            client_of(ip("192.0.2.1"), &[proxy], xff.iter()),
            ip("192.0.2.1")
        );
        // Through the proxy: the right-most address it did not add itself.
        assert_eq!(client_of(proxy, &[proxy], xff.iter()), ip("198.51.100.1"));
        let chain = [HeaderValue::from_static("203.0.113.9, 10.0.0.3")];
        assert_eq!(
            client_of(proxy, &[proxy, ip("10.0.0.3")], chain.iter()),
            ip("203.0.113.9")
        );
        // A trusted peer without the header is the client.
        assert_eq!(client_of(proxy, &[proxy], [].iter()), proxy);
    }
}
