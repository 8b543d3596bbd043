//! The business console (`/business`), signed in with one of the
//! business's API keys: its standing (quality rating and messaging-limit
//! tier, with the reason and date of each change), its templates and their
//! review, and its webhook's deliveries and failures with a "send test
//! event" button. Audiences and campaigns live at the partner (its
//! advertiser console, `accord_partner::web`); this console says where.

use super::{row, when, BusinessSession, Posted};
use crate::http::AppState;
use accord_domain::business::Quality;
use accord_http::web::{
    alert, csrf_field, html, page, Frame, Markup, NavLink, Page, SecretSignIn, WebSession,
};
use accord_messenger_wire::{BusinessStatus, EventView, TemplateView, WebhookOutcome};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

const LINKS: &[NavLink] = &[
    NavLink {
        href: "/business#standing",
        label: "Standing",
    },
    NavLink {
        href: "/business#templates",
        label: "Templates",
    },
    NavLink {
        href: "/business#webhook",
        label: "Webhook",
    },
];

/// The console's sign-in.
const SIGN_IN: SecretSignIn = SecretSignIn {
    area: "Business console",
    home: "/business",
    action: "/business/signin",
    field: "api_key",
    label: "API key",
    hint: "Sign in with one of your business's API keys (acb_…); create one with `accord business keys create`.",
};

/// The sign-in page of the console (with `error` when a key was refused).
pub(crate) fn signin_page(s: &AppState, headers: &HeaderMap, error: Option<&str>) -> Response {
    SIGN_IN.page(&s.web, headers, error)
}

/// `GET /business`.
pub async fn console(State(s): State<AppState>, b: BusinessSession) -> Response {
    render(&s, &b, StatusCode::OK, None).await
}

async fn render(
    s: &AppState,
    b: &BusinessSession,
    status: StatusCode,
    notice: Option<Markup>,
) -> Response {
    let id = b.business.account;
    let loaded = async {
        Ok::<_, crate::business::BusinessError>((
            s.business.evaluate(id).await?,
            s.business.templates(id).await?,
            s.business.events(id, 50).await?,
        ))
    }
    .await;
    let (standing, templates, events) = match loaded {
        Ok(x) => x,
        Err(e) => return super::page_error(e).into_response(),
    };
    let frame = Frame {
        area: "Business console",
        home: "/business",
        links: LINKS,
        signed_in: Some((&b.business.display_name, &b.session)),
        sign_out: "/signout",
    };
    let body = html! {
        @if let Some(n) = notice { (n) }
        (standing_section(&standing))
        (templates_section(&templates))
        (webhook_section(&b.session, &standing, &events))
        section aria-labelledby="aud-h" {
            h2 id="aud-h" { "Audiences and campaigns" }
            p {
                "Custom audiences run at the partner, the ads platform. Upload a customer list with "
                code { "accord audience upload" } " (numbers and emails are pseudonymised on your machine "
                "through the key service; only pseudonyms leave it), start campaigns with "
                code { "accord audience campaign" } ", and see noised sizes, reach and impressions in the "
                "partner's advertiser console at " code { "/advertiser" } " on the partner's address."
            }
        }
    };
    Page(status, page(&frame, &standing.display_name, body)).into_response()
}

fn quality_class(q: Quality) -> &'static str {
    match q {
        Quality::Green => "green",
        Quality::Yellow => "yellow",
        Quality::Red => "red",
    }
}

fn standing_section(st: &BusinessStatus) -> Markup {
    let tier_limit = st
        .tier_limit
        .map_or_else(|| "unlimited".to_owned(), |l| l.to_string());
    html! {
        section id="standing" aria-labelledby="standing-h" {
            h2 id="standing-h" { "Standing" }
            div class="cards" {
                div class="card" {
                    div { "Quality rating" }
                    div class="big" id="quality" { span class={"badge " (quality_class(st.quality))} { (st.quality.as_str()) } }
                    div class="muted" { (st.quality_reason) }
                    div class="muted" { "since " (when(st.quality_changed_at)) }
                }
                div class="card" {
                    div { "Messaging limit" }
                    div class="big" id="tier" { (tier_limit) }
                    div class="muted" { "new customers per 24 hours (tier " (st.tier + 1) ")" }
                    div class="muted" { (st.tier_reason) ", since " (when(st.tier_changed_at)) }
                }
                div class="card" {
                    div { "Last 24 hours" }
                    div class="big" { (st.started_24h) }
                    div class="muted" { "customers you started conversations with" }
                }
                div class="card" {
                    div { "Last 7 days" }
                    div class="big" { (st.delivered_7d) }
                    div class="muted" { "delivered, " (st.blocks_7d) " blocks, " (st.reports_7d) " reports" }
                }
            }
            @if st.marketing_paused {
                (alert("error", "Your marketing templates are paused while your quality rating is red. Utility and authentication messages keep flowing."))
            }
            table {
                tbody {
                    (row("Verified", html! { @if st.verified { span class="badge ok" { "verified" } } @else { "not yet: users see your number, not your name" } }))
                    @if st.revoked { (row("Revoked", html! { span class="badge red" { "revoked by the operator" } })) }
                }
            }
        }
    }
}

fn templates_section(ts: &[TemplateView]) -> Markup {
    html! {
        section id="templates" aria-labelledby="tpl-h" {
            h2 id="tpl-h" { "Templates" }
            @if ts.is_empty() {
                p { "No templates yet. Submit one with " code { "accord business templates submit" } "." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Language" } th scope="col" { "Version" } th scope="col" { "Category" } th scope="col" { "Review" } th scope="col" { "Body" } } }
                    tbody {
                        @for t in ts {
                            tr {
                                td { code { (t.name) } }
                                td { (t.language) }
                                td { (t.version) }
                                td { (t.category.as_str()) }
                                td {
                                    span class={"badge " (t.status)} { (t.status) }
                                    @if let Some(r) = &t.reason { div class="muted" { (r) } }
                                }
                                td { (t.body) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn webhook_section(session: &WebSession, st: &BusinessStatus, events: &[EventView]) -> Markup {
    html! {
        section id="webhook" aria-labelledby="hook-h" {
            h2 id="hook-h" { "Webhook" }
            @match &st.webhook {
                None => p { "No webhook is registered. Set one with " code { "accord business webhooks set" } "." },
                Some(w) => {
                    table {
                        tbody {
                            (row("URL", html! { code { (w.url) } }))
                            (row("Delivered", html! { (w.delivered) }))
                            (row("Waiting", html! { (w.due) }))
                            (row("Failing (retrying)", html! { (w.failing) }))
                            (row("Given up after 24 hours", html! { (w.given_up) }))
                        }
                    }
                    form method="post" action="/business/webhook-test" {
                        (csrf_field(session))
                        button type="submit" { "Send test event" }
                    }
                }
            }
            h3 { "Recent events" }
            @if events.is_empty() {
                p { "No events yet." }
            } @else {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Message" } th scope="col" { "Status" } th scope="col" { "Webhook" } th scope="col" { "Attempts" } } }
                    tbody {
                        @for e in events {
                            tr {
                                td { (when(e.at)) }
                                td { code { (e.message_id) } }
                                td {
                                    span class={"badge " (e.status)} { (e.status) }
                                    @if let Some(c) = &e.code { " " code { (c) } }
                                }
                                td { (e.webhook) @if let Some(err) = &e.last_error { div class="muted" { (err) } } }
                                td { (e.attempts) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn outcome(o: &WebhookOutcome) -> Markup {
    if o.delivered {
        alert(
            "ok",
            &format!(
                "Test event {} delivered to {} (HTTP {}).",
                o.event_id,
                o.url,
                o.status.unwrap_or(200)
            ),
        )
    } else {
        alert(
            "error",
            &format!(
                "Test event {} not delivered to {}: {}.",
                o.event_id,
                o.url,
                o.error.as_deref().unwrap_or("no answer")
            ),
        )
    }
}

/// `POST /business/webhook-test`: one signed test event, now.
pub async fn webhook_test(
    State(s): State<AppState>,
    b: BusinessSession,
    _: Posted<accord_http::web::NoFields>,
) -> Response {
    match s.business.test_webhook(b.business.account).await {
        Ok(o) => render(&s, &b, StatusCode::OK, Some(outcome(&o))).await,
        Err(e) => {
            let (status, m) = super::refusal(e);
            render(&s, &b, status, Some(m)).await
        }
    }
}
