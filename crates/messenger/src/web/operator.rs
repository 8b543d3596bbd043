//! The operator console (`/operator`), signed in with the admin token:
//! publish a policy version, the coordination feed's health (lag, pending,
//! failing, held, the oldest unconfirmed deletion), the consent ledger's
//! heads and a full verification on demand, template review and business
//! verification.
//!
//! Key-service quota use is on the key service's own operator page
//! (`accord_keyd::web`), linked from here: the messenger holds no admin
//! credential at a key service in another process.

use super::{when, OperatorSession, Posted};
use crate::http::AppState;
use accord_domain::business::{Review, TemplateStatus};
use accord_domain::policy::{ConsentProfile, PolicyDraft, Purpose};
use accord_domain::time::HOUR_MS;
use accord_domain::AccountId;
use accord_http::web::{
    alert, csrf_field, html, page, Frame, Markup, NavLink, Page, SecretSignIn, WebSession,
};
use accord_messenger_wire::ReviewTemplate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

const LINKS: &[NavLink] = &[
    NavLink {
        href: "/operator#policies",
        label: "Policies",
    },
    NavLink {
        href: "/operator#feed",
        label: "Feed",
    },
    NavLink {
        href: "/operator#ledger",
        label: "Ledger",
    },
    NavLink {
        href: "/operator#templates",
        label: "Templates",
    },
    NavLink {
        href: "/operator#businesses",
        label: "Businesses",
    },
];

/// The console's sign-in.
const SIGN_IN: SecretSignIn = SecretSignIn {
    area: "Operator console",
    home: "/operator",
    action: "/operator/signin",
    field: "token",
    label: "Admin token",
    hint: "Sign in with the operator's admin token (admin.token in the data directory by default).",
};

/// The console's sign-in page (with `error` when a token was refused).
pub(crate) fn signin_page(s: &AppState, headers: &HeaderMap, error: Option<&str>) -> Response {
    SIGN_IN.page(&s.web, headers, error)
}

/// `GET /operator`.
pub async fn console(State(s): State<AppState>, o: OperatorSession) -> Response {
    render(&s, &o.session, StatusCode::OK, None).await
}

async fn render(
    s: &AppState,
    session: &WebSession,
    status: StatusCode,
    notice: Option<Markup>,
) -> Response {
    let store = s.messenger.store();
    let loaded = async {
        let policies = store.policies().await?;
        let feed = store.feed_stats().await?;
        let heads = store.ledger_heads().await?;
        Ok::<_, accord_storage::StoreError>((policies, feed, heads))
    }
    .await;
    let (policies, feed, heads) = match loaded {
        Ok(x) => x,
        Err(e) => return super::page_error(crate::service::ServiceError::from(e)).into_response(),
    };
    let business = async {
        Ok::<_, crate::business::BusinessError>((
            s.business.templates_in(TemplateStatus::Pending).await?,
            s.business.all().await?,
        ))
    }
    .await;
    let (queue, businesses) = match business {
        Ok(x) => x,
        Err(e) => return super::page_error(e).into_response(),
    };
    let now = s.messenger.now();
    let lag_ms = feed.oldest_pending_at.map_or(0, |t| (now.0 - t.0).max(0));
    let entries: u64 = heads.iter().map(|(_, n, _)| n).sum();
    let frame = Frame {
        area: "Operator console",
        home: "/operator",
        links: LINKS,
        signed_in: Some(("operator", session)),
        sign_out: "/signout",
    };
    let body = html! {
        @if let Some(n) = notice { (n) }
        section id="policies" aria-labelledby="pol-h" {
            h2 id="pol-h" { "Policies" }
            @if policies.versions().is_empty() {
                p { "No policy has been published." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Version" } th scope="col" { "Profile" } th scope="col" { "Purposes" } th scope="col" { "Published" } th scope="col" { "Accept by" } th scope="col" { "Digest" } } }
                    tbody {
                        @for p in policies.versions().iter().rev() {
                            tr {
                                td { (p.version) }
                                td { (p.profile.as_str()) }
                                td { (p.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")) }
                                td { (when(p.published_at)) }
                                td { (when(p.accept_by)) }
                                td { code { (p.text_sha256.get(..16).unwrap_or(&p.text_sha256)) "…" } }
                            }
                        }
                    }
                }
            }
            form method="post" action="/operator/policies" aria-labelledby="publish-h" {
                h3 id="publish-h" { "Publish a new version" }
                (csrf_field(session))
                label for="text" { "Policy text" }
                textarea id="text" name="text" required {}
                fieldset {
                    legend { "Purposes it asks for" }
                    @for p in Purpose::ALL {
                        label class="check" { input type="checkbox" name=(p.as_str()) value="yes" checked; span { (p.as_str()) } }
                    }
                }
                label for="profile" { "Consent profile" }
                select id="profile" name="profile" {
                    @for p in [ConsentProfile::Strict, ConsentProfile::Whatsapp2016] {
                        option value=(p.as_str()) selected[p == s.default_profile] { (p.as_str()) }
                    }
                }
                p { "Every user then has 30 days to accept it." }
                p { button type="submit" { "Publish" } }
            }
        }
        section id="feed" aria-labelledby="feed-h" {
            h2 id="feed-h" { "Coordination feed" }
            @if s.feed.is_none() { p class="muted" { "This messenger runs without a partner feed." } }
            div class="cards" {
                div class="card" { div { "Lag" } div class="big" id="feed-lag" { (lag_ms / 1000) " s" } }
                div class="card" { div { "Pending" } div class="big" id="feed-pending" { (feed.pending_events) } div class="muted" { (feed.pending_accounts) " accounts" } }
                div class="card" { div { "Failing" } div class="big" id="feed-failing" { (feed.failing_accounts) } div class="muted" { "most attempts: " (feed.max_attempts) } }
                div class="card" { div { "Held by the partner" } div class="big" id="feed-held" { (feed.held_accounts) } div class="muted" { "accounts" } }
                div class="card" {
                    div { "Oldest unconfirmed deletion" }
                    div class="big" id="feed-deletion" {
                        @match feed.oldest_unconfirmed_deletion_at {
                            None => "none",
                            Some(t) => (when(t)),
                        }
                    }
                }
            }
            @if lag_ms > 24 * HOUR_MS {
                (alert("error", "Some feed work is unconfirmed past the 24-hour deletion deadline."))
            }
        }
        section id="keyd" aria-labelledby="keyd-h" {
            h2 id="keyd-h" { "Key service" }
            @match s.messenger.keys() {
                Some(k) => p {
                    "Quota use per client is on the key service's own operator page: "
                    a href={(k.public_url.trim_end_matches('/')) "/operator"} { (k.public_url.trim_end_matches('/')) "/operator" }
                    " (sign in with its admin token)."
                },
                None => p class="muted" { "This messenger runs without a key service." },
            }
        }
        section id="ledger" aria-labelledby="ledger-h" {
            h2 id="ledger-h" { "Consent ledger" }
            p { (entries) " entries in " (heads.len()) " shards." }
            details {
                summary { "Shard heads" }
                table {
                    thead { tr { th scope="col" { "Shard" } th scope="col" { "Entries" } th scope="col" { "Head hash" } } }
                    tbody {
                        @for (shard, n, h) in &heads {
                            tr { td { (shard) } td { (n) } td { code { (hex::encode(h)) } } }
                        }
                    }
                }
            }
            form method="post" action="/operator/ledger/verify" {
                (csrf_field(session))
                button type="submit" { "Verify the whole ledger" }
            }
        }
        section id="templates" aria-labelledby="tq-h" {
            h2 id="tq-h" { "Templates waiting for review" }
            @if queue.is_empty() {
                p { "Nothing to review." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Business" } th scope="col" { "Name" } th scope="col" { "Category" } th scope="col" { "Body" } th scope="col" { "Decision" } } }
                    tbody {
                        @for t in &queue {
                            tr {
                                td { code { (t.business) } }
                                td { code { (t.name) } " " (t.language) " v" (t.version) }
                                td { (t.category.as_str()) }
                                td { (t.body) }
                                td {
                                    form method="post" action="/operator/templates" {
                                        (csrf_field(session))
                                        input type="hidden" name="id" value=(t.id);
                                        label for={"reason-" (t.id)} { "Reason (for a rejection)" }
                                        input id={"reason-" (t.id)} name="reason" type="text";
                                        button type="submit" name="decision" value="approve" { "Approve" }
                                        " "
                                        button type="submit" name="decision" value="reject" class="danger" { "Reject" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section id="businesses" aria-labelledby="biz-h" {
            h2 id="biz-h" { "Businesses" }
            @if businesses.is_empty() {
                p { "No business has registered." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Business" } th scope="col" { "Name" } th scope="col" { "Quality" } th scope="col" { "Verified" } } }
                    tbody {
                        @for b in &businesses {
                            tr {
                                td { code { (b.account) } }
                                td { (b.display_name) }
                                td { span class={"badge " (b.quality)} { (b.quality) } }
                                td {
                                    form class="inline" method="post" action="/operator/businesses" {
                                        (csrf_field(session))
                                        input type="hidden" name="business" value=(b.account);
                                        @if b.verified_at.is_some() {
                                            input type="hidden" name="verified" value="no";
                                            "verified " button type="submit" class="secondary" { "Unverify " (b.display_name) }
                                        } @else {
                                            input type="hidden" name="verified" value="yes";
                                            button type="submit" { "Verify " (b.display_name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Page(status, page(&frame, "Operations", body)).into_response()
}

#[derive(Deserialize)]
pub struct PublishForm {
    text: String,
    ads: Option<String>,
    product: Option<String>,
    profile: String,
}

/// `POST /operator/policies`.
pub async fn publish(
    State(s): State<AppState>,
    o: OperatorSession,
    p: Posted<PublishForm>,
) -> Response {
    let f = p.form;
    let mut purposes = Vec::new();
    if f.ads.is_some() {
        purposes.push(Purpose::Ads);
    }
    if f.product.is_some() {
        purposes.push(Purpose::Product);
    }
    let profile = match f.profile.as_str() {
        "strict" => ConsentProfile::Strict,
        "whatsapp-2016" => ConsentProfile::Whatsapp2016,
        _ => {
            let m = alert("error", "Unknown consent profile.");
            return render(&s, &o.session, StatusCode::BAD_REQUEST, Some(m)).await;
        }
    };
    let published = match PolicyDraft::new(f.text, purposes, profile) {
        Ok(draft) => s.messenger.publish_policy(draft).await,
        Err(e) => {
            let (status, m) = super::refusal(crate::http::status::policy_error(e));
            return render(&s, &o.session, status, Some(m)).await;
        }
    };
    match published {
        Ok(v) => {
            let m = alert(
                "ok",
                &format!(
                    "Published version {}. Users must accept it by {}.",
                    v.version,
                    when(v.accept_by)
                ),
            );
            render(&s, &o.session, StatusCode::OK, Some(m)).await
        }
        Err(e) => {
            let (status, m) = super::refusal(e);
            render(&s, &o.session, status, Some(m)).await
        }
    }
}

/// `POST /operator/ledger/verify`: walks every shard's chain.
pub async fn verify_ledger(
    State(s): State<AppState>,
    o: OperatorSession,
    _: Posted<accord_http::web::NoFields>,
) -> Response {
    match s.messenger.verify_ledger().await {
        Ok(r) => {
            let m = html! {
                div class="alert ok" role="status" {
                    "The ledger verifies: " (r.entries) " entries in " (r.shards.len()) " shards, every chain intact."
                    details {
                        summary { "Heads and Merkle roots" }
                        table {
                            thead { tr { th scope="col" { "Shard" } th scope="col" { "Entries" } th scope="col" { "Head" } th scope="col" { "Root" } } }
                            tbody {
                                @for sh in &r.shards {
                                    tr { td { (sh.shard) } td { (sh.entries) } td { code { (sh.head_hash) } } td { code { (sh.root) } } }
                                }
                            }
                        }
                    }
                }
            };
            render(&s, &o.session, StatusCode::OK, Some(m)).await
        }
        Err(e) => {
            let (status, m) = super::refusal(e);
            render(&s, &o.session, status, Some(m)).await
        }
    }
}

#[derive(Deserialize)]
pub struct ReviewForm {
    id: Uuid,
    decision: String,
    reason: Option<String>,
}

/// `POST /operator/templates`: approve or reject one template.
pub async fn review(
    State(s): State<AppState>,
    o: OperatorSession,
    p: Posted<ReviewForm>,
) -> Response {
    let decision = match p.form.decision.as_str() {
        "approve" => Review::Approve,
        "reject" => Review::Reject,
        _ => {
            let m = alert("error", "Unknown decision.");
            return render(&s, &o.session, StatusCode::BAD_REQUEST, Some(m)).await;
        }
    };
    let reason = p.form.reason.filter(|r| !r.trim().is_empty());
    match s
        .business
        .review(p.form.id, ReviewTemplate { decision, reason })
        .await
    {
        Ok(t) => {
            let m = alert(
                "ok",
                &format!("Template {} v{} is now {}.", t.name, t.version, t.status),
            );
            render(&s, &o.session, StatusCode::OK, Some(m)).await
        }
        Err(e) => {
            let (status, m) = super::refusal(e);
            render(&s, &o.session, status, Some(m)).await
        }
    }
}

#[derive(Deserialize)]
pub struct VerifyForm {
    business: AccountId,
    verified: String,
}

/// `POST /operator/businesses`: verify or unverify a business.
pub async fn verify_business(
    State(s): State<AppState>,
    o: OperatorSession,
    p: Posted<VerifyForm>,
) -> Response {
    let verified = p.form.verified == "yes";
    match s.business.set_verified(p.form.business, verified).await {
        Ok(()) => {
            let m = alert(
                "ok",
                if verified {
                    "The business is verified: users see its name and badge."
                } else {
                    "The business is no longer verified."
                },
            );
            render(&s, &o.session, StatusCode::OK, Some(m)).await
        }
        Err(e) => {
            let (status, m) = super::refusal(e);
            render(&s, &o.session, status, Some(m)).await
        }
    }
}
