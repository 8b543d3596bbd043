//! The advertiser console (`/advertiser`), on the shared web layer
//! (`accord_http::web`), signed in with the advertiser's token: its
//! audiences with their last released (noised) sizes and the ε left, its
//! campaigns with their released reach and impressions. A page view never
//! releases anything (releases happen at an upload's completion and, for
//! campaigns, on the API's report); uploads and campaigns are made with
//! `accord audience`. Nothing here shows a true count.

use crate::http::AppState;
use accord_domain::audience::report::Released;
use accord_http::web::{
    self, html, page, Frame, Markup, Page, Posted, SecretSignIn, SessionKeys, SessionKind, WebAuth,
    WebSession,
};
use accord_storage::audience::Advertiser;
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
    area: "Advertiser console",
    home: "/advertiser",
    action: "/advertiser/signin",
    field: "token",
    label: "Advertiser token",
    hint: "Sign in with the token `accord audience advertiser` printed for your business.",
};

/// The console's routes (HTML, not in the OpenAPI document).
pub fn router() -> Router<AppState> {
    web::pages(
        Router::new()
            .route("/advertiser", get(console))
            .route("/advertiser/signin", post(sign_in))
            .route("/signout", post(sign_out)),
    )
}

/// The advertiser of a session: bound to its token's hash, so that a
/// session ends with the token.
async fn advertiser_of(s: &AppState, session: &WebSession) -> Option<Advertiser> {
    if session.kind != SessionKind::Business {
        return None;
    }
    let hash: [u8; 32] = hex::decode(&session.subject).ok()?.try_into().ok()?;
    let audiences = s.service.audiences.as_ref()?;
    audiences
        .store
        .advertiser_by_token(&hash)
        .await
        .ok()
        .flatten()
}

fn figure(r: &Option<Released>) -> Markup {
    match r {
        Some(r) => html! { (r.to_string()) },
        None => html! { span class="muted" { "not released yet" } },
    }
}

fn epsilon(milli: u32) -> String {
    format!("ε {}.{:03}", milli / 1000, milli % 1000)
}

/// `GET /advertiser`: the sign-in, or the console.
pub async fn console(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let session = s.web.from_headers(&headers);
    let adv = match &session {
        Some(w) => advertiser_of(&s, w).await,
        None => None,
    };
    let (Some(session), Some(adv)) = (session, adv) else {
        return SIGN_IN.page(&s.web, &headers, None);
    };
    let loaded = async {
        Ok::<_, crate::PartnerError>((
            s.service.list_audiences(&adv).await?,
            s.service.list_campaigns(&adv).await?,
        ))
    }
    .await;
    let (audiences, campaigns) = match loaded {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "advertiser console not read");
            return web::PageError::internal().into_response();
        }
    };
    let frame = Frame {
        area: "Advertiser console",
        home: "/advertiser",
        links: &[],
        signed_in: Some((&adv.name, &session)),
        sign_out: "/signout",
    };
    let body = html! {
        section aria-labelledby="aud-h" {
            h2 id="aud-h" { "Audiences" }
            p class="muted" {
                "Sizes are differentially private: noised, rounded to two significant figures, "
                "shown as \"fewer than 100\" below 100, and released once per completed upload until "
                "the audience's budget is spent. Upload a customer list with "
                code { "accord audience upload" } "; only pseudonyms leave your machine."
            }
            @if audiences.is_empty() {
                p { "No audiences yet. Create one with " code { "accord audience create" } "." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Audience" } th scope="col" { "Size" } th scope="col" { "Budget left" } } }
                    tbody {
                        @for a in &audiences {
                            tr { td { (a.name) } td { (figure(&a.size)) } td { (epsilon(a.budget_left_milli)) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="camp-h" {
            h2 id="camp-h" { "Campaigns" }
            @if campaigns.is_empty() {
                p { "No campaigns yet. Start one with " code { "accord audience campaign" } "." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Title" } th scope="col" { "Audience" } th scope="col" { "Reach" } th scope="col" { "Impressions" } th scope="col" { "Budget left" } } }
                    tbody {
                        @for c in &campaigns {
                            tr {
                                td { (c.title) div class="muted" { (c.text) } }
                                td { (c.audience) }
                                td { (figure(&c.reach)) }
                                td { (figure(&c.impressions)) }
                                td { (epsilon(c.budget_left_milli)) }
                            }
                        }
                    }
                }
                p class="muted" { "Reach and impressions are released at most hourly, with " code { "accord audience report" } "." }
            }
        }
    };
    Page::ok(page(&frame, &adv.name, body)).into_response()
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
}

/// `POST /advertiser/signin`.
pub async fn sign_in(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Posted<TokenForm>,
) -> Response {
    let token = p.form.token.trim();
    match s.service.authenticate_advertiser(token).await {
        Ok(Some(_)) => {
            let hash = accord_crypto::token::TokenHash::of(token);
            let session = WebSession::new(SessionKind::Business, hex::encode(hash.0));
            web::see_other("/advertiser", Some(s.web.set_cookie(&session)))
        }
        Ok(None) => SIGN_IN.page(&s.web, &headers, Some("That is not an advertiser token.")),
        Err(e) => {
            tracing::warn!(error = %e, "advertiser sign-in failed");
            web::PageError::internal().into_response()
        }
    }
}

/// `POST /signout`.
pub async fn sign_out(State(s): State<AppState>, _: Posted<web::NoFields>) -> Response {
    web::see_other("/advertiser", Some(s.web.clear_cookie()))
}
