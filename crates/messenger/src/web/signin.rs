//! Sign-in to the three consoles, and sign-out.
//!
//! - A user: phone number, then the code sent to it (the registration's
//!   code flow, with its hourly limits and attempt counts). Only a number
//!   with an account signs in; the pages never create accounts or
//!   devices.
//! - A business: one of its API keys (the session keeps the key's hash,
//!   so that revoking the key ends the session).
//! - The operator: the admin token.
//!
//! The sign-in forms carry the CSRF token of an anonymous session, set
//! when the form is shown.

use super::{business, operator, public_frame, refusal, Posted};
use crate::http::AppState;
use accord_http::web::{
    self, alert, csrf_field, html, page, Markup, MaybeSession, Page, SessionKind, WebSession,
};
use accord_http::ClientAddr;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

fn phone_form(session: &WebSession, notice: Option<Markup>) -> Markup {
    page(
        &public_frame("Privacy centre", "/"),
        "Sign in",
        html! {
            @if let Some(n) = notice { (n) }
            p { "Sign in with the phone number of your Accord account. We send a code to it." }
            form method="post" action="/signin" {
                (csrf_field(session))
                label for="phone" { "Phone number, with country code" }
                input id="phone" name="phone" type="tel" autocomplete="tel" required placeholder="+1 415 555 0100";
                p { button type="submit" { "Send code" } }
            }
            p class="muted" { "Businesses: " a href="/business" { "business console" } ". Operators: " a href="/operator" { "operator console" } "." }
        },
    )
}

/// `GET /signin`.
pub async fn user_form(
    State(s): State<AppState>,
    MaybeSession(current): MaybeSession,
    headers: HeaderMap,
) -> Response {
    if current
        .as_ref()
        .is_some_and(|w| w.kind == SessionKind::User)
    {
        return web::see_other("/", None);
    }
    let (session, fresh) = web::form_session(&s.web, &headers);
    web::with_session(
        &s.web,
        &session,
        fresh,
        Page::ok(phone_form(&session, None)),
    )
}

#[derive(Deserialize)]
pub struct PhoneForm {
    phone: String,
}

/// `POST /signin`: sends the code, then asks for it.
pub async fn user_start(
    State(s): State<AppState>,
    ClientAddr(client): ClientAddr,
    p: Posted<PhoneForm>,
) -> Page {
    match s
        .messenger
        .start_registration(p.form.phone.trim(), None, client)
        .await
    {
        Ok(started) => Page::ok(code_form(
            &p.session,
            started.registration_id,
            started.dev_code.as_deref(),
            None,
        )),
        Err(e) => {
            let (status, notice) = refusal(e);
            Page(status, phone_form(&p.session, Some(notice)))
        }
    }
}

fn code_form(
    session: &WebSession,
    registration: Uuid,
    dev_code: Option<&str>,
    notice: Option<Markup>,
) -> Markup {
    page(
        &public_frame("Privacy centre", "/"),
        "Enter your code",
        html! {
            @if let Some(n) = notice { (n) }
            @if let Some(code) = dev_code {
                (alert("info", &format!("Development server: no SMS is sent. Your code is {code}.")))
            } @else {
                p { "We sent a code to your phone. It is valid for a few minutes." }
            }
            form method="post" action="/signin/code" {
                (csrf_field(session))
                input type="hidden" name="registration" value=(registration);
                label for="code" { "Code" }
                input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required;
                p { button type="submit" { "Sign in" } }
            }
            p { a href="/signin" { "Use another number" } }
        },
    )
}

#[derive(Deserialize)]
pub struct CodeForm {
    registration: Uuid,
    code: String,
}

/// `POST /signin/code`: checks the code and signs the user in.
pub async fn user_code(State(s): State<AppState>, p: Posted<CodeForm>) -> Response {
    match s
        .messenger
        .sign_in_with_code(p.form.registration, p.form.code.trim())
        .await
    {
        Ok(account) => {
            let session = WebSession::new(SessionKind::User, account.to_string());
            web::see_other("/", Some(s.web.set_cookie(&session)))
        }
        Err(e) => {
            let (status, notice) = refusal(e);
            Page(
                status,
                code_form(&p.session, p.form.registration, None, Some(notice)),
            )
            .into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct KeyForm {
    api_key: String,
}

/// `POST /business/signin`.
pub async fn business(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Posted<KeyForm>,
) -> Response {
    let key = p.form.api_key.trim();
    match s.business.authenticate(key).await {
        Ok(_) => {
            let hash = accord_crypto::token::TokenHash::of(key);
            let session = WebSession::new(SessionKind::Business, hex::encode(hash.0));
            web::see_other("/business", Some(s.web.set_cookie(&session)))
        }
        Err(e) => {
            let a = accord_http::ApiError::from(e);
            business::signin_page(&s, &headers, Some(&a.message))
        }
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    token: String,
}

/// `POST /operator/signin`.
pub async fn operator(
    State(s): State<AppState>,
    headers: HeaderMap,
    p: Posted<TokenForm>,
) -> Response {
    web::operator_sign_in(&s.web, &s.admin_token, &p.form.token, "/operator").unwrap_or_else(|| {
        operator::signin_page(&s, &headers, Some("That is not the admin token."))
    })
}

/// `POST /signout`: ends whichever session this is.
pub async fn sign_out(
    State(s): State<AppState>,
    p: Posted<accord_http::web::NoFields>,
) -> Response {
    let to = match p.session.kind {
        SessionKind::Business => "/business",
        SessionKind::Operator => "/operator",
        _ => "/signin",
    };
    web::see_other(to, Some(s.web.clear_cookie()))
}
