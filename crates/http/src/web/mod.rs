//! Server-rendered pages on the shared layer: the page frame, the
//! security headers every page carries, sealed session cookies and CSRF
//! checks. A service writes its pages with [`maud`] (escaping is the
//! default: a `<script>` in a user's data renders as text) and mounts
//! them with [`pages`].
//!
//! Decisions:
//! - **No script at all.** The pages are plain HTML forms; the
//!   Content-Security-Policy ([`CSP`]) allows no script source, so even an
//!   injected `<script>` could not run. Every page works with JavaScript
//!   off because there is none.
//! - **Sessions are sealed cookies** (XChaCha20-Poly1305 under the
//!   service's web key, [`SessionKeys`]): the cookie holds the session's
//!   kind, subject, CSRF token and expiry, authenticated and encrypted,
//!   `HttpOnly`, `SameSite=Strict`, `Secure` unless the service listens on
//!   loopback only. Expiry follows the wall clock, not a simulated one.
//!   What a session may do is checked again on every request against the
//!   live data (a deleted account or a revoked business is signed out).
//! - **CSRF**: every form carries the session's token ([`csrf_field`]); a
//!   post is refused unless the token matches ([`Posted`]) and the browser
//!   does not say the request came from another site (`Sec-Fetch-Site`,
//!   `Origin`). Sign-in forms use an anonymous session for their token.

use accord_crypto::sealed::MasterKey;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The one stylesheet, served at `/static/accord.css`.
pub const CSS: &str = include_str!("accord.css");

/// The icon, at `/static/accord.svg` and `/favicon.ico`.
pub const ICON: &str = include_str!("accord.svg");

/// No script, no plugin, no frame; styles and images from the page's own
/// origin only; forms post to it only.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The prefix of a service's session cookie, `accord_<service>`: cookies
/// are shared by every port of a host, so that each service on one host
/// keeps its own.
pub const COOKIE_PREFIX: &str = "accord_";

/// How long a signed-in session lasts.
pub const SESSION_TTL_S: i64 = 8 * 3600;

/// What a session is for. `Anonymous` only carries the CSRF token of the
/// sign-in forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Anonymous,
    User,
    Business,
    Operator,
}

/// The content of a session cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSession {
    pub kind: SessionKind,
    /// The account (user, business) it signs in; empty otherwise.
    pub subject: String,
    /// The token every form of this session carries.
    pub csrf: String,
    /// Wall-clock Unix seconds.
    pub expires: i64,
}

impl WebSession {
    /// A new session of `kind` for `subject`, with a fresh CSRF token.
    pub fn new(kind: SessionKind, subject: impl Into<String>) -> Self {
        WebSession {
            kind,
            subject: subject.into(),
            csrf: random_token(),
            expires: unix_now() + SESSION_TTL_S,
        }
    }

    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        let a = accord_crypto::token::TokenHash::of(&self.csrf);
        let b = accord_crypto::token::TokenHash::of(presented);
        bool::from(a.0.ct_eq(&b.0))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The key that seals a service's session cookies, and how they are
/// marked.
#[derive(Clone, Debug)]
pub struct SessionKeys {
    key: Arc<MasterKey>,
    /// Bound into every cookie, so that one service's cookie is nothing
    /// to another's.
    service: &'static str,
    /// `Secure` on the cookie (the service is reachable beyond loopback).
    pub secure: bool,
}

impl SessionKeys {
    /// A key for this process only (tests; sessions end with it).
    pub fn ephemeral(service: &'static str) -> Self {
        SessionKeys {
            key: Arc::new(MasterKey::generate()),
            service,
            secure: false,
        }
    }

    /// The key in `path` (32 bytes, mode 0600), created on first start.
    /// Every node of a service needs the same file.
    pub fn load_or_create(path: &Path, service: &'static str) -> std::io::Result<Self> {
        let key = match std::fs::read(path) {
            Ok(bytes) => MasterKey::from_bytes(&bytes).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not a 32-byte key", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(path)?;
                std::io::Write::write_all(&mut f, key.to_bytes().as_slice())?;
                f.sync_all()?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(SessionKeys {
            key: Arc::new(key),
            service,
            secure: false,
        })
    }

    fn aad(&self) -> Vec<u8> {
        format!("accord web session v1\0{}", self.service).into_bytes()
    }

    /// The cookie value of `s`.
    pub fn seal(&self, s: &WebSession) -> String {
        let json = serde_json::to_vec(s).expect("a session serialises");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.key.seal(&json, &self.aad()))
    }

    /// The session in a cookie value, if it is authentic and not expired.
    pub fn open(&self, value: &str) -> Option<WebSession> {
        let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        let json = self.key.open(&sealed, &self.aad()).ok()?;
        let s: WebSession = serde_json::from_slice(&json).ok()?;
        (s.expires > unix_now()).then_some(s)
    }

    /// The session of a request, if it carries a valid one.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<WebSession> {
        cookie(headers, &self.cookie_name()).and_then(|v| self.open(v))
    }

    /// `Set-Cookie` for `s`.
    pub fn set_cookie(&self, s: &WebSession) -> HeaderValue {
        let max_age = (s.expires - unix_now()).max(0);
        self.cookie_header(&self.seal(s), max_age)
    }

    /// `Set-Cookie` that ends the session.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie_header("", 0)
    }

    /// This service's session cookie's name.
    pub fn cookie_name(&self) -> String {
        format!("{COOKIE_PREFIX}{}", self.service)
    }

    fn cookie_header(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let name = self.cookie_name();
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        ))
        .expect("a cookie header is ASCII")
    }
}

/// The value of cookie `name` in a request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the browser says this request came from another site:
/// `Sec-Fetch-Site` other than `same-origin` or `none` (typed or
/// bookmarked), or, from a browser that does not send it, an `Origin`
/// whose host is not the request's `Host` (or `null`).
pub fn cross_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => false,
        Some(origin) => origin.split_once("://").map(|(_, h)| h) != host,
    }
}

/// A service whose state can seal and open its page sessions.
pub trait WebAuth {
    fn session_keys(&self) -> &SessionKeys;
}

/// A posted form, after the CSRF checks: the session it came with and
/// the form's fields. A post without a session, with a wrong token, or
/// from another site is refused with 403 and a page that says so.
#[derive(Debug)]
pub struct Posted<T> {
    pub session: WebSession,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: String,
}

impl<S, T> FromRequest<S> for Posted<T>
where
    S: WebAuth + Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let refused =
            |why: &str| PageError::new(StatusCode::FORBIDDEN, "Form refused", why).into_response();
        if cross_site(req.headers()) {
            return Err(refused(
                "This form was sent from another site. Open the page here and try again.",
            ));
        }
        let Some(session) = state.session_keys().from_headers(req.headers()) else {
            return Err(refused(
                "Your session has ended. Open the page again and resend the form.",
            ));
        };
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| refused("The form could not be read."))?;
        let token: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| refused("The form has no security token. Open the page again."))?;
        if !session.csrf_matches(&token.csrf) {
            return Err(refused(
                "The form's security token does not match your session. Open the page again.",
            ));
        }
        let form: T = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "Form not understood",
                &format!("The form's fields are not what this page expects: {e}"),
            )
            .into_response()
        })?;
        Ok(Posted { session, form })
    }
}

/// A form with no fields but its CSRF token (a button).
#[derive(Debug, Deserialize)]
pub struct NoFields {}

/// The operator's session of a request: an `Operator` session bound to
/// the hash of the admin token (so that a new token ends every session).
pub fn operator_session(
    keys: &SessionKeys,
    headers: &HeaderMap,
    admin_token: &accord_crypto::token::TokenHash,
) -> Option<WebSession> {
    let bound = hex::encode(admin_token.0);
    keys.from_headers(headers)
        .filter(|w| w.kind == SessionKind::Operator && w.subject == bound)
}

/// Signs the operator in when `presented` is the admin token: a 303 to
/// `to` with the new session's cookie; `None` for any other token.
pub fn operator_sign_in(
    keys: &SessionKeys,
    admin_token: &accord_crypto::token::TokenHash,
    presented: &str,
    to: &str,
) -> Option<Response> {
    if accord_crypto::token::TokenHash::of(presented.trim()) != *admin_token {
        return None;
    }
    tracing::info!(service = keys.service, "operator signed in to the pages");
    let session = WebSession::new(SessionKind::Operator, hex::encode(admin_token.0));
    Some(see_other(to, Some(keys.set_cookie(&session))))
}

/// The session of a page request, if any (never refuses).
#[derive(Debug)]
pub struct MaybeSession(pub Option<WebSession>);

impl<S> FromRequestParts<S> for MaybeSession
where
    S: WebAuth + Send + Sync,
{
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeSession(
            state.session_keys().from_headers(&parts.headers),
        ))
    }
}

/// The hidden CSRF field of a form of `session`.
pub fn csrf_field(session: &WebSession) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A link in a page's top bar.
#[derive(Clone, Debug)]
pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
}

/// The frame of a page: which console, its links, who is signed in.
#[derive(Clone, Debug)]
pub struct Frame<'a> {
    /// The console's name ("Privacy centre", …).
    pub area: &'a str,
    pub home: &'static str,
    pub links: &'a [NavLink],
    /// Who is signed in (as the page may show it) and the session, for
    /// the sign-out form.
    pub signed_in: Option<(&'a str, &'a WebSession)>,
    /// Where the sign-out form posts.
    pub sign_out: &'static str,
}

/// A whole page: `title` in the tab and as the page's `h1`.
pub fn page(frame: &Frame<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (frame.area) " · Accord" }
                link rel="stylesheet" href="/static/accord.css";
                link rel="icon" type="image/svg+xml" href="/static/accord.svg";
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href=(frame.home) { "Accord " (frame.area) }
                    @if !frame.links.is_empty() {
                        nav aria-label="Sections" {
                            ul { @for l in frame.links { li { a href=(l.href) { (l.label) } } } }
                        }
                    }
                    @if let Some((who, session)) = frame.signed_in {
                        div class="who" {
                            span { "Signed in as " strong { (who) } }
                            form class="inline" method="post" action=(frame.sign_out) {
                                (csrf_field(session))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer { "Accord · no ads, no trackers, no script on this page." }
            }
        }
    }
}

/// An alert box: `error`, `ok` or `info`.
pub fn alert(kind: &'static str, text: &str) -> Markup {
    let role = if kind == "error" { "alert" } else { "status" };
    html! { div class={"alert " (kind)} role=(role) { (text) } }
}

/// A rendered page with its status.
#[derive(Debug)]
pub struct Page(pub StatusCode, pub Markup);

impl Page {
    pub fn ok(m: Markup) -> Self {
        Page(StatusCode::OK, m)
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.1.into_string(),
        )
            .into_response()
    }
}

/// A page-level failure, shown as a small page of its own.
#[derive(Debug, Clone)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: &str, message: &str) -> Self {
        PageError {
            status,
            title: title.to_owned(),
            message: message.to_owned(),
        }
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The server could not finish this request. Nothing was changed; try again.",
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let frame = Frame {
            area: "",
            home: "/",
            links: &[],
            signed_in: None,
            sign_out: "/",
        };
        let body = html! {
            (alert("error", &self.message))
            p { a href="/" { "Back to the start" } }
        };
        Page(self.status, page(&frame, &self.title, body)).into_response()
    }
}

/// The session a sign-in form is shown with: the request's own, or a new
/// anonymous one (`true`: its cookie must go with the page).
pub fn form_session(keys: &SessionKeys, headers: &HeaderMap) -> (WebSession, bool) {
    match keys.from_headers(headers) {
        Some(w) => (w, false),
        None => (WebSession::new(SessionKind::Anonymous, ""), true),
    }
}

/// A page with the cookie of its form's session when that is new.
pub fn with_session(keys: &SessionKeys, session: &WebSession, fresh: bool, p: Page) -> Response {
    let mut r = p.into_response();
    if fresh {
        r.headers_mut()
            .insert(header::SET_COOKIE, keys.set_cookie(session));
    }
    r
}

/// A console's sign-in with one secret (an API key, an admin token).
#[derive(Clone, Debug)]
pub struct SecretSignIn {
    pub area: &'static str,
    pub home: &'static str,
    /// Where the form posts.
    pub action: &'static str,
    /// The field's name and id.
    pub field: &'static str,
    pub label: &'static str,
    /// Where the secret comes from, in words.
    pub hint: &'static str,
}

impl SecretSignIn {
    /// The sign-in page; 401 with `error` when a secret was refused.
    pub fn page(&self, keys: &SessionKeys, headers: &HeaderMap, error: Option<&str>) -> Response {
        let (session, fresh) = form_session(keys, headers);
        let frame = Frame {
            area: self.area,
            home: self.home,
            links: &[],
            signed_in: None,
            sign_out: "/signout",
        };
        let body = html! {
            @if let Some(e) = error { (alert("error", e)) }
            p { (self.hint) }
            form method="post" action=(self.action) {
                (csrf_field(&session))
                label for=(self.field) { (self.label) }
                input id=(self.field) name=(self.field) type="password" autocomplete="off" required;
                p { button type="submit" { "Sign in" } }
            }
        };
        let status = if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        with_session(
            keys,
            &session,
            fresh,
            Page(status, page(&frame, "Sign in", body)),
        )
    }
}

/// A 303 to `to` with optional `Set-Cookie`.
pub fn see_other(to: &str, cookie: Option<HeaderValue>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response();
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// The security headers of every page and its stylesheet.
async fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with no referrer at all a browser
    // sends `Origin: null` on form posts, which the CSRF check refuses.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A service's pages with the stylesheet and the security headers; merge
/// the result into its API router before [`crate::finish`].
pub fn pages<S>(routes: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .route("/static/accord.css", get(stylesheet))
        .route("/static/accord.svg", get(icon))
        .route("/favicon.ico", get(icon))
        .layer(axum::middleware::map_response(harden))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_sessions_round_trip_and_refuse_tampering() {
        let keys = SessionKeys::ephemeral("messenger");
        let s = WebSession::new(SessionKind::User, "acct");
        let v = keys.seal(&s);
        assert_eq!(keys.open(&v), Some(s.clone()));
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&v)
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(keys.open(&forged), None);
        // Another service's key (or the same key bound to another service).
        let other = SessionKeys {
            key: keys.key.clone(),
            service: "partner",
            secure: false,
        };
        assert_eq!(other.open(&v), None);
        let expired = WebSession {
            expires: unix_now() - 1,
            ..s
        };
        assert_eq!(keys.open(&keys.seal(&expired)), None);
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        let s = WebSession::new(SessionKind::Operator, "");
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&WebSession::new(SessionKind::Operator, "").csrf));
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(
            cross_site(&h),
            "another port or subdomain is another origin"
        );
        h.remove("sec-fetch-site");
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&h));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; accord_messenger=xyz; b=2"),
        );
        assert_eq!(
            cookie(&h, &SessionKeys::ephemeral("messenger").cookie_name()),
            Some("xyz")
        );
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn markup_escapes_user_data() {
        let evil = "<script>alert(1)</script>";
        let m = html! { p { (evil) } };
        assert_eq!(
            m.into_string(),
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
        );
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let mut keys = SessionKeys::ephemeral("messenger");
        let c = keys.set_cookie(&WebSession::new(SessionKind::User, "a"));
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        keys.secure = true;
        let c = keys.set_cookie(&WebSession::new(SessionKind::User, "a"));
        assert!(c.to_str().unwrap().ends_with("; Secure"));
    }
}
