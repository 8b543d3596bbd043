//! The key service's operator page (`/operator`), on the shared web layer
//! (`accord_http::web`), signed in with the key service's admin token:
//! quota use of the current UTC day per client kind and purpose, and per
//! client for every client that is not a device. The messenger's operator
//! console links here; the messenger holds no admin credential at a key
//! service in another process.

use crate::http::AppState;
use accord_http::web::{self, html, page, Frame, Page, Posted, SecretSignIn, SessionKeys, WebAuth};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

impl WebAuth for AppState {
    fn session_keys(&self) -> &SessionKeys {
        &self.web
    }
}

const SIGN_IN: SecretSignIn = SecretSignIn {
    area: "Key service",
    home: "/operator",
    action: "/operator/signin",
    field: "token",
    label: "Admin token",
    hint:
        "Sign in with the key service's admin token (admin.token in the data directory by default).",
};

/// The page's routes (HTML, not in the OpenAPI document).
pub fn router() -> Router<AppState> {
    web::pages(
        Router::new()
            .route("/operator", get(console))
            .route("/operator/signin", post(sign_in))
            .route("/signout", post(sign_out)),
    )
}

fn percent(used: u64, quota: u64) -> String {
    if quota == 0 {
        return "no quota".into();
    }
    format!("{:.1}%", used as f64 * 100.0 / quota as f64)
}

/// `GET /operator`: the sign-in, or the day's quota use.
pub async fn console(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = web::operator_session(&s.web, &headers, &s.admin_token) else {
        return SIGN_IN.page(&s.web, &headers, None);
    };
    let q = match s.service.quota_use().await {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(error = %e, "quota use not read");
            return web::PageError::internal().into_response();
        }
    };
    let frame = Frame {
        area: "Key service",
        home: "/operator",
        links: &[],
        signed_in: Some(("operator", &session)),
        sign_out: "/signout",
    };
    let body = html! {
        section aria-labelledby="kinds-h" {
            h2 id="kinds-h" { "Quota use today (UTC), per kind of client" }
            table {
                thead { tr { th scope="col" { "Kind" } th scope="col" { "Clients" } th scope="col" { "Purpose" } th scope="col" { "Daily quota" } th scope="col" { "Used today" } th scope="col" { "Share" } } }
                tbody {
                    @for ((kind, purpose), u) in &q.by_kind {
                        tr {
                            td { (kind) }
                            td { (q.clients.get(kind).copied().unwrap_or(0)) }
                            td { (purpose.as_str()) }
                            td { (u.quota) }
                            td { (u.used_today) }
                            td { (percent(u.used_today, u.quota)) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="named-h" {
            h2 id="named-h" { "Clients other than devices" }
            @if q.named.is_empty() {
                p { "None." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Client" } th scope="col" { "Kind" } th scope="col" { "Purpose" } th scope="col" { "Daily quota" } th scope="col" { "Used today" } th scope="col" { "Share" } } }
                    tbody {
                        @for c in &q.named {
                            @for (p, u) in &c.purposes {
                                tr {
                                    td { (c.name) }
                                    td { (c.kind.as_str()) }
                                    td { (p.as_str()) }
                                    td { (u.quota) }
                                    td { (u.used_today) }
                                    td { (percent(u.used_today, u.quota)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Page::ok(page(&frame, "Quota use", body)).into_response()
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
}

/// `POST /operator/signin`.
pub async fn sign_in(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Posted<TokenForm>,
) -> Response {
    web::operator_sign_in(&s.web, &s.admin_token, &p.form.token, "/operator")
        .unwrap_or_else(|| SIGN_IN.page(&s.web, &headers, Some("That is not the admin token.")))
}

/// `POST /signout`.
pub async fn sign_out(
    State(s): State<AppState>,
    _: Posted<accord_http::web::NoFields>,
) -> Response {
    web::see_other("/operator", Some(s.web.clear_cookie()))
}
