//! The messenger's pages, served by the messenger itself on the shared
//! web layer (`accord_http::web`: page frame, security headers, sealed
//! session cookies, CSRF):
//!
//! - [`privacy`]: the privacy centre at `/`, for a user signed in with
//!   their phone number and a code;
//! - [`business`]: the business console at `/business`, signed in with
//!   one of the business's API keys;
//! - [`operator`]: the operator console at `/operator`, signed in with
//!   the admin token;
//! - [`signin`]: the three sign-ins and sign-out.
//!
//! Pages call the same use cases as the JSON API (`Messenger`,
//! `Business`); nothing here decides a rule. Every page checks who is
//! calling against the live data ([`UserSession`], [`BusinessSession`],
//! [`OperatorSession`]); every form is a [`Posted`] (CSRF token, same
//! site). Errors show on the page with the API's message.

pub mod business;
pub mod operator;
pub mod privacy;
pub mod signin;

use crate::http::AppState;
use accord_domain::consent::Access;
use accord_domain::{AccountId, Timestamp};
use accord_http::web::{
    self, alert, html, Frame, Markup, NavLink, PageError, SessionKeys, SessionKind, WebAuth,
    WebSession,
};
use accord_http::ApiError;
use accord_storage::messenger::Account;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use accord_http::web::Posted;

impl WebAuth for AppState {
    fn session_keys(&self) -> &SessionKeys {
        &self.web
    }
}

/// Every page route of the messenger (not in the OpenAPI document: these
/// answer HTML).
pub fn router() -> Router<AppState> {
    web::pages(
        Router::new()
            .route("/", get(privacy::centre))
            .route("/privacy/accept", post(privacy::accept))
            .route("/privacy/consent", post(privacy::consent))
            .route("/privacy/business", post(privacy::business_control))
            .route("/privacy/unblock", post(privacy::unblock))
            .route("/privacy/receipt.json", get(privacy::receipt))
            .route("/privacy/export.json", get(privacy::export))
            .route("/privacy/delete", post(privacy::delete))
            .route("/signin", get(signin::user_form).post(signin::user_start))
            .route("/signin/code", post(signin::user_code))
            .route("/signout", post(signin::sign_out))
            .route("/business", get(business::console))
            .route("/business/signin", post(signin::business))
            .route("/business/webhook-test", post(business::webhook_test))
            .route("/operator", get(operator::console))
            .route("/operator/signin", post(signin::operator))
            .route("/operator/policies", post(operator::publish))
            .route("/operator/ledger/verify", post(operator::verify_ledger))
            .route("/operator/templates", post(operator::review))
            .route("/operator/businesses", post(operator::verify_business)),
    )
}

/// The privacy centre's frame.
pub(crate) fn user_frame<'a>(who: &'a str, s: &'a WebSession) -> Frame<'a> {
    const LINKS: &[NavLink] = &[
        NavLink {
            href: "/#consent",
            label: "Consent",
        },
        NavLink {
            href: "/#data",
            label: "My data",
        },
        NavLink {
            href: "/#businesses",
            label: "Businesses",
        },
    ];
    Frame {
        area: "Privacy centre",
        home: "/",
        links: LINKS,
        signed_in: Some((who, s)),
        sign_out: "/signout",
    }
}

/// A frame without anyone signed in (the sign-in pages).
pub(crate) fn public_frame(area: &'static str, home: &'static str) -> Frame<'static> {
    Frame {
        area,
        home,
        links: &[],
        signed_in: None,
        sign_out: "/signout",
    }
}

/// A user's session, checked against the account: a deleted account is
/// signed out. Without one, the browser goes to `/signin`.
#[derive(Debug)]
pub struct UserSession {
    pub session: WebSession,
    pub account: Account,
    pub access: Access,
}

impl FromRequestParts<AppState> for UserSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        let to_signin = || web::see_other("/signin", Some(s.web.clear_cookie()));
        let session = s
            .web
            .from_headers(&parts.headers)
            .filter(|w| w.kind == SessionKind::User)
            .ok_or_else(to_signin)?;
        let id = AccountId::parse(&session.subject).ok_or_else(to_signin)?;
        match s.messenger.account_access(id).await {
            Ok(Some((account, access))) => Ok(UserSession {
                session,
                account,
                access,
            }),
            Ok(None) => Err(to_signin()),
            Err(e) => Err(page_error(e).into_response()),
        }
    }
}

/// A business's session: the API key it signed in with must still be
/// valid and the business not revoked.
#[derive(Debug)]
pub struct BusinessSession {
    pub session: WebSession,
    pub business: std::sync::Arc<accord_storage::business::BusinessRow>,
}

impl FromRequestParts<AppState> for BusinessSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        let session = s
            .web
            .from_headers(&parts.headers)
            .filter(|w| w.kind == SessionKind::Business)
            .ok_or_else(|| signed_out(s, parts, "/business", business::signin_page))?;
        let hash = hex::decode(&session.subject)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(accord_crypto::token::TokenHash);
        let Some(hash) = hash else {
            return Err(web::see_other("/business", Some(s.web.clear_cookie())));
        };
        match s.business.authenticate_hash(hash).await {
            Ok(business) => Ok(BusinessSession { session, business }),
            Err(e) => {
                let a = ApiError::from(e);
                let mut r =
                    business::signin_page(s, &parts.headers, Some(&a.message)).into_response();
                r.headers_mut()
                    .insert(axum::http::header::SET_COOKIE, s.web.clear_cookie());
                Err(r)
            }
        }
    }
}

/// The operator's session: bound to the admin token's hash, so that a
/// new token ends it.
#[derive(Debug)]
pub struct OperatorSession {
    pub session: WebSession,
}

impl FromRequestParts<AppState> for OperatorSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Response> {
        match web::operator_session(&s.web, &parts.headers, &s.admin_token) {
            Some(session) => Ok(OperatorSession { session }),
            None => Err(signed_out(s, parts, "/operator", operator::signin_page)),
        }
    }
}

/// Without a console session: a page shows the console's sign-in; a form
/// is refused (403: nothing was done) and says where to sign in.
fn signed_out(
    s: &AppState,
    parts: &Parts,
    console: &str,
    signin: fn(&AppState, &axum::http::HeaderMap, Option<&str>) -> Response,
) -> Response {
    if parts.method == axum::http::Method::GET {
        return signin(s, &parts.headers, None);
    }
    PageError::new(
        StatusCode::FORBIDDEN,
        "Form refused",
        &format!("You are not signed in to this console. Sign in at {console} and try again."),
    )
    .into_response()
}

/// An error of a use case as a page.
pub(crate) fn page_error(e: impl Into<ApiError>) -> PageError {
    let a: ApiError = e.into();
    if a.status.is_server_error() {
        tracing::warn!(code = a.code, "a page request failed");
    }
    PageError::new(a.status, "That did not work", &a.message)
}

/// A refused action, shown on the page it came from. The page answers
/// 200 unless the server failed: the request worked and the page says
/// what a rule refused (a browser reports a 4xx page as a console error,
/// and this page is not one).
pub(crate) fn refusal(e: impl Into<ApiError>) -> (StatusCode, Markup) {
    let a: ApiError = e.into();
    let status = if a.status.is_server_error() {
        tracing::warn!(code = a.code, "a page action failed");
        a.status
    } else {
        StatusCode::OK
    };
    (status, alert("error", &a.message))
}

/// `2026-12-01 05:12 UTC`.
pub(crate) fn when(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

/// `12 days 4 hours` (or `less than an hour`) from `now` to `until`.
pub(crate) fn time_left(now: Timestamp, until: Timestamp) -> String {
    let ms = (until.0 - now.0).max(0);
    let hours = ms / 3_600_000;
    let (d, h) = (hours / 24, hours % 24);
    match (d, h) {
        (0, 0) => "less than an hour".to_owned(),
        (0, h) => format!("{h} hour{}", plural(h)),
        (d, 0) => format!("{d} day{}", plural(d)),
        (d, h) => format!("{d} day{} {h} hour{}", plural(d), plural(h)),
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A definition list row.
pub(crate) fn row(label: &str, value: Markup) -> Markup {
    html! { tr { th scope="row" { (label) } td { (value) } } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_write_them() {
        let t = Timestamp::parse("2026-12-01T05:12:30Z").unwrap();
        assert_eq!(when(t), "2026-12-01 05:12 UTC");
        assert_eq!(
            time_left(t, t.plus_millis(30 * 60_000)),
            "less than an hour"
        );
        assert_eq!(time_left(t, t.plus_days(1)), "1 day");
        assert_eq!(
            time_left(t, t.plus_days(12).plus_millis(4 * 3_600_000 + 10)),
            "12 days 4 hours"
        );
        assert_eq!(time_left(t, t.plus_millis(-5)), "less than an hour");
    }
}
