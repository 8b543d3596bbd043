//! Operator endpoints: clients and their quotas, the audit log, key
//! rotation. All need the admin token.

use super::purpose;
use crate::http::extract::Admin;
use crate::http::AppState;
use crate::service::KeyVersions;
use accord_crypto::oprf::OprfPurpose;
use accord_domain::time::DAY_MS;
use accord_domain::Timestamp;
use accord_http::{ApiError, ApiResult, ErrorBody, Json, Path, Query};
use accord_storage::keyd::{Client, ClientId, ClientKind, DailyUsage};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A client as shown to the operator. Never its token.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientView {
    #[schema(value_type = String)]
    pub client_id: ClientId,
    pub name: String,
    #[schema(value_type = String, example = "device")]
    pub kind: ClientKind,
    #[schema(value_type = i64)]
    pub created_at: Timestamp,
    /// Elements per rolling day, per purpose (0: not allowed).
    #[schema(value_type = Object, example = json!({"contacts": 1000, "coordination": 0}))]
    pub quotas: BTreeMap<OprfPurpose, u64>,
}

impl From<Client> for ClientView {
    fn from(c: Client) -> Self {
        ClientView {
            client_id: c.id,
            name: c.name,
            kind: c.kind,
            created_at: c.created_at,
            quotas: c.quotas,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    /// The client's id (a UUID), when the caller chooses it (the messenger
    /// gives a device's credential the device's id); random otherwise.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[schema(value_type = String, example = "business")]
    pub kind: ClientKind,
    /// Per purpose; purposes left out get the default for `kind`.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"coordination": 100000}))]
    pub quotas: BTreeMap<OprfPurpose, u64>,
    /// Clients of one quota group (a UUID) share one meter: the
    /// messenger puts the devices of one account in the account's group.
    #[serde(default)]
    pub quota_group: Option<String>,
}

/// A new client and its API token, shown this once.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: ClientView,
    pub token: String,
}

/// Registers an API client (messenger, partner, business, device) and
/// returns its token once.
#[utoipa::path(post, path = "/v1/admin/clients", tag = "admin", request_body = CreateClient, security(("admin" = [])),
    responses((status = 201, body = CreatedClient), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create_client(
    State(s): State<AppState>,
    _: Admin,
    Json(b): Json<CreateClient>,
) -> ApiResult<(StatusCode, Json<CreatedClient>)> {
    let id = match &b.id {
        Some(id) => client_id(id)?,
        None => ClientId::random(),
    };
    let quota_group = b.quota_group.as_deref().map(client_id).transpose()?;
    let (client, token) = s
        .service
        .create_client_as(id, &b.name, b.kind, &b.quotas, quota_group)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedClient {
            client: client.into(),
            token: token.reveal().to_owned(),
        }),
    ))
}

/// Every client, without tokens.
#[utoipa::path(get, path = "/v1/admin/clients", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = Vec<ClientView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_clients(State(s): State<AppState>, _: Admin) -> ApiResult<Json<Vec<ClientView>>> {
    Ok(Json(
        s.service
            .clients()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuota {
    /// Elements per rolling day; 0 forbids the purpose.
    pub daily: u64,
}

fn client_id(s: &str) -> Result<ClientId, ApiError> {
    ClientId::parse(s).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "client id must be a UUID",
        )
    })
}

/// Revokes a client: its token no longer authenticates (the messenger
/// revokes the credentials of a deleted account's devices). 404 when there
/// is no such client or it was revoked already.
#[utoipa::path(delete, path = "/v1/admin/clients/{client_id}", tag = "admin", security(("admin" = [])),
    params(("client_id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_client(
    State(s): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if s.service.revoke_client(client_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(crate::KeydError::UnknownClient.into())
    }
}

/// Sets a client's daily quota for one purpose.
#[utoipa::path(put, path = "/v1/admin/clients/{client_id}/quotas/{purpose}", tag = "admin", request_body = SetQuota, security(("admin" = [])),
    params(("client_id" = String, Path), ("purpose" = String, Path)),
    responses((status = 200, body = ClientView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_quota(
    State(s): State<AppState>,
    _: Admin,
    Path((id, p)): Path<(String, String)>,
    Json(b): Json<SetQuota>,
) -> ApiResult<Json<ClientView>> {
    let (id, purpose) = (client_id(&id)?, purpose(&p)?);
    Ok(Json(
        s.service.set_quota(id, purpose, b.daily).await?.into(),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// One client only.
    pub client_id: Option<String>,
    /// Start (RFC 3339 or ms); default 30 days ago.
    pub from: Option<String>,
    /// End, exclusive (RFC 3339 or ms); default now.
    pub to: Option<String>,
}

/// One audit line: elements a client had evaluated under a purpose on a
/// UTC day. Counts only; elements are never recorded.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditLine {
    #[schema(value_type = String)]
    pub client_id: ClientId,
    #[schema(value_type = String, example = "contacts")]
    pub purpose: OprfPurpose,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub elements: u64,
}

impl From<DailyUsage> for AuditLine {
    fn from(u: DailyUsage) -> Self {
        AuditLine {
            client_id: u.client,
            purpose: u.purpose,
            day: u.day.to_rfc3339()[..10].to_owned(),
            elements: u.elements,
        }
    }
}

fn instant(s: &Option<String>, default: Timestamp) -> Result<Timestamp, ApiError> {
    match s {
        None => Ok(default),
        Some(s) => Timestamp::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_time",
                "expected RFC 3339 (UTC) or milliseconds",
            )
        }),
    }
}

/// The audit log: per client, purpose and UTC day, how many elements were
/// evaluated.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(AuditQuery), security(("admin" = [])),
    responses((status = 200, body = Vec<AuditLine>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditLine>>> {
    let client = q.client_id.as_deref().map(client_id).transpose()?;
    let now = s.service.now();
    let to = instant(&q.to, now.plus_millis(1))?;
    let from = instant(&q.from, now.plus_millis(-30 * DAY_MS))?;
    Ok(Json(
        s.service
            .audit(client, from, to)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Introduces a new key version for the purpose and makes it active. Older
/// versions stay evaluable by explicit `key_version`.
#[utoipa::path(post, path = "/v1/admin/keys/{purpose}/rotate", tag = "admin", params(("purpose" = String, Path)), security(("admin" = [])),
    responses((status = 201, body = KeyVersions), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn rotate(
    State(s): State<AppState>,
    _: Admin,
    Path(p): Path<String>,
) -> ApiResult<(StatusCode, Json<KeyVersions>)> {
    let purpose = purpose(&p)?;
    Ok((StatusCode::CREATED, Json(s.service.rotate(purpose).await?)))
}
