//! The privacy centre (`/`): the policy in force and its deadline, the
//! acceptance screen as the profile demands, consent per purpose with
//! grant and withdraw, the user's own ledger timeline, where their data
//! went, the consent receipt, businesses and blocked people, export and
//! deletion.
//!
//! The acceptance screen shows what each profile is: under
//! `whatsapp-2016` the sharing box comes ticked and stays ticked unless
//! the user unticks it, with the opt-out window it leaves; under `strict`
//! one unticked switch per purpose. The rules themselves are the domain's
//! (`ConsentState::decide`): a refused withdrawal shows the rule's own
//! message, with the date the window closed.

use super::{refusal, row, time_left, user_frame, when, Posted, UserSession};
use crate::http::AppState;
use accord_domain::business::Category;
use accord_domain::consent::{
    Access, ConsentChannel, ConsentCommand, ConsentError, ConsentEvent, PurposeState, SharingChoice,
};
use accord_domain::ledger::{LedgerEntry, LedgerEvent};
use accord_domain::policy::{ConsentProfile, PolicyHistory, PolicyVersion, Purpose};
use accord_domain::{AccountId, Timestamp};
use accord_http::web::{self, alert, csrf_field, html, page, Markup, Page, WebSession};
use accord_messenger_wire::{BusinessControl, SetControls};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeSet;

/// What the centre shows besides the live state: a notice after a
/// successful action (`?done=`), or a refusal.
pub(crate) enum Notice {
    None,
    Done(&'static str),
    Refused(Markup),
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

/// The fixed messages of `?done=` (never the query's own text).
fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "accepted" => "Thank you. Your choice is recorded in the consent ledger.",
        "granted" => "Granted. You can withdraw it here at any time.",
        "withdrawn" => "Withdrawn. The partner is told to delete what it holds for that purpose.",
        "business" => "Your settings for that business are saved.",
        "unblocked" => "Unblocked.",
        _ => return None,
    })
}

/// `GET /`: the privacy centre.
pub async fn centre(
    State(s): State<AppState>,
    u: UserSession,
    Query(q): Query<DoneQuery>,
) -> Response {
    let notice = q
        .done
        .as_deref()
        .and_then(done_message)
        .map_or(Notice::None, Notice::Done);
    render(&s, &u, StatusCode::OK, notice).await
}

/// Everything the centre shows, loaded for one render.
struct View {
    policies: PolicyHistory,
    ledger: Vec<LedgerEntry>,
    businesses: Vec<BusinessControl>,
    blocks: Vec<(AccountId, Timestamp)>,
    now: Timestamp,
}

async fn load(s: &AppState, u: &UserSession) -> Result<View, Response> {
    let fail = |e: crate::service::ServiceError| super::page_error(e).into_response();
    let store = s.messenger.store();
    let policies = store.policies().await.map_err(|e| fail(e.into()))?;
    let ledger = store
        .ledger_for_account(u.account.id)
        .await
        .map_err(|e| fail(e.into()))?
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.account == Some(u.account.id))
        .collect();
    let businesses = s
        .business
        .controls_for(u.account.id)
        .await
        .map_err(|e| super::page_error(e).into_response())?;
    let blocks = s
        .e2e
        .blocks_of(u.account.id)
        .await
        .map_err(|e| super::page_error(e).into_response())?;
    Ok(View {
        policies,
        ledger,
        businesses,
        blocks,
        now: s.messenger.now(),
    })
}

pub(crate) async fn render(
    s: &AppState,
    u: &UserSession,
    status: StatusCode,
    notice: Notice,
) -> Response {
    let v = match load(s, u).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let who = u.account.phone.e164().to_owned();
    let body = html! {
        @match &notice {
            Notice::None => {},
            Notice::Done(m) => (alert("ok", m)),
            Notice::Refused(m) => (m),
        }
        (policy_section(u, &v))
        (consent_section(u, &v))
        (data_section(u, &v))
        (business_section(u, &v))
        (account_section(u))
    };
    Page(
        status,
        page(&user_frame(&who, &u.session), "Your privacy", body),
    )
    .into_response()
}

fn profile_name(p: ConsentProfile) -> &'static str {
    match p {
        ConsentProfile::Strict => "strict: each purpose separately, off unless you turn it on",
        ConsentProfile::Whatsapp2016 => {
            "whatsapp-2016: one sharing box, ticked in advance, with an opt-out window"
        }
    }
}

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Ads => "Ads: the partner may use your account information to show you ads",
        Purpose::Product => {
            "Products: the partner may use it for friend suggestions and linking accounts"
        }
    }
}

fn policy_section(u: &UserSession, v: &View) -> Markup {
    let current = v.policies.current_at(v.now);
    let accepted = u.account.consent.accepted.as_ref();
    let pending = u.account.consent.pending_policy(&v.policies, v.now);
    html! {
        section aria-labelledby="policy-h" {
            h2 id="policy-h" { "The policy in force" }
            @match current {
                None => p { "No policy has been published yet." },
                Some(p) => {
                    table {
                        tbody {
                            (row("Version", html! { (p.version) }))
                            (row("Profile", html! { (profile_name(p.profile)) }))
                            (row("Published", html! { (when(p.published_at)) }))
                            (row("Digest (SHA-256)", html! { code { (p.text_sha256) } }))
                            (row("Accept by", html! { (when(p.accept_by)) }))
                        }
                    }
                    @match accepted {
                        Some(a) if a.version == p.version => {
                            p { "You accepted version " (a.version) " on " (when(a.at)) "." }
                        }
                        _ => {
                            @if p.accept_by > v.now {
                                p class="alert info" role="status" {
                                    strong { (time_left(v.now, p.accept_by)) } " left to accept version " (p.version) "."
                                }
                            } @else {
                                (alert("error", &format!("The deadline to accept version {} passed on {}. Until you accept, you can only read the policy, export your data or delete your account.", p.version, when(p.accept_by))))
                            }
                        }
                    }
                    details {
                        summary { "Read the policy text" }
                        div class="policy-text" tabindex="0" role="region" aria-label="Policy text" { (p.text) }
                    }
                    @if let Some(p) = pending { (accept_form(&u.session, p)) }
                }
            }
        }
    }
}

fn accept_form(session: &WebSession, p: &PolicyVersion) -> Markup {
    html! {
        form method="post" action="/privacy/accept" aria-labelledby="accept-h" {
            h3 id="accept-h" { "Accept version " (p.version) }
            (csrf_field(session))
            input type="hidden" name="version" value=(p.version);
            @match p.profile {
                ConsentProfile::Whatsapp2016 => {
                    input type="hidden" name="shown" value="share";
                    label class="check" {
                        input type="checkbox" name="share" value="yes" checked;
                        span { "Share my account information with the partner to improve my ads and products experiences." }
                    }
                    p class="muted" {
                        "This box is ticked unless you untick it. If you accept with it ticked, you have "
                        (accord_domain::policy::OPT_OUT_WINDOW_DAYS)
                        " days after accepting to opt out; after that the choice stands."
                    }
                }
                ConsentProfile::Strict => {
                    p { "Each use is off unless you turn it on. You can change each one at any time." }
                    @for purpose in &p.purposes {
                        label class="check" {
                            input type="checkbox" name=(purpose.as_str()) value="yes";
                            span { (purpose_name(*purpose)) }
                        }
                    }
                }
            }
            p { button type="submit" { "Agree to version " (p.version) } }
        }
    }
}

fn consent_section(u: &UserSession, v: &View) -> Markup {
    let state = &u.account.consent;
    let Some(accepted) = &state.accepted else {
        return html! {
            section id="consent" aria-labelledby="consent-h" {
                h2 id="consent-h" { "Your consent" }
                p { "You have not accepted a policy yet, so nothing is shared." }
            }
        };
    };
    let policy = v.policies.get(accepted.version);
    let granted = state.granted_purposes(&v.policies, v.now);
    let restricted = matches!(u.access, Access::Restricted { .. });
    html! {
        section id="consent" aria-labelledby="consent-h" {
            h2 id="consent-h" { "Your consent" }
            p { "Under version " (accepted.version) ", accepted " (when(accepted.at)) "." }
            @if let Some(until) = accepted.opt_out_until {
                @if until > v.now {
                    p { "Opt-out window: " strong { (time_left(v.now, until)) } " left (closes " (when(until)) ")." }
                } @else {
                    p { "The opt-out window closed on " (when(until)) "." }
                }
            }
            table {
                thead { tr { th scope="col" { "Purpose" } th scope="col" { "State" } th scope="col" { "Since" } th scope="col" { "Change" } } }
                tbody {
                    @for purpose in policy.map(|p| p.purposes.clone()).unwrap_or_default() {
                        @let st = state.purposes.get(&purpose);
                        @let is_granted = granted.contains(&purpose);
                        tr {
                            td { (purpose_name(purpose)) }
                            td { (purpose_badge(st, is_granted)) }
                            td { (st.map(|s| when(purpose_at(s))).unwrap_or_else(|| "—".into())) }
                            td {
                                form class="inline" method="post" action="/privacy/consent" {
                                    (csrf_field(&u.session))
                                    input type="hidden" name="purpose" value=(purpose.as_str());
                                    @if is_granted {
                                        input type="hidden" name="action" value="withdraw";
                                        button type="submit" class="secondary" { "Withdraw " (purpose.as_str()) }
                                    } @else if restricted {
                                        span class="muted" { "Accept the current policy to grant" }
                                    } @else {
                                        input type="hidden" name="action" value="grant";
                                        button type="submit" { "Grant " (purpose.as_str()) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn purpose_at(s: &PurposeState) -> Timestamp {
    match s {
        PurposeState::Granted { at, .. }
        | PurposeState::Refused { at, .. }
        | PurposeState::Withdrawn { at, .. } => *at,
    }
}

fn purpose_badge(s: Option<&PurposeState>, granted_now: bool) -> Markup {
    let (class, text) = match s {
        Some(PurposeState::Granted { pre_ticked, .. }) if granted_now => (
            "granted",
            if *pre_ticked {
                "granted (pre-ticked box)"
            } else {
                "granted"
            },
        ),
        Some(PurposeState::Granted { .. }) => ("withdrawn", "lapsed"),
        Some(PurposeState::Refused { .. }) => ("refused", "refused"),
        Some(PurposeState::Withdrawn { .. }) => ("withdrawn", "withdrawn"),
        None => ("pending", "not given"),
    };
    html! { span class={"badge " (class)} { (text) } }
}

/// One ledger entry of the user's own, in words.
fn describe(e: &LedgerEntry) -> String {
    match e.event() {
        Ok(LedgerEvent::Consent { event }) => match event {
            ConsentEvent::Registered { .. } => "Account registered".into(),
            ConsentEvent::PolicyAccepted { version, .. } => {
                format!("Accepted policy version {version}")
            }
            ConsentEvent::Granted {
                purpose,
                pre_ticked,
                ..
            } => format!(
                "Granted {}{}",
                purpose.as_str(),
                if pre_ticked {
                    " (pre-ticked box left ticked)"
                } else {
                    ""
                }
            ),
            ConsentEvent::Refused { purpose, .. } => format!("Refused {}", purpose.as_str()),
            ConsentEvent::Withdrawn { purpose, .. } => format!("Withdrew {}", purpose.as_str()),
            ConsentEvent::AccountDeleted { .. } => "Account deleted".into(),
        },
        Ok(LedgerEvent::Propagated {
            recipient,
            purposes,
            ..
        }) => format!(
            "Shared with the {recipient} for {}",
            purposes_text(&purposes)
        ),
        Ok(LedgerEvent::DeletionConfirmed {
            recipient,
            purposes,
            ..
        }) => format!(
            "The {recipient} confirmed it deleted your data for {}",
            purposes_text(&purposes)
        ),
        Ok(other) => other.kind().to_owned(),
        Err(_) => e.kind.clone(),
    }
}

fn purposes_text(p: &BTreeSet<Purpose>) -> String {
    if p.is_empty() {
        return "every purpose".into();
    }
    p.iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(" and ")
}

fn data_section(u: &UserSession, v: &View) -> Markup {
    let went: Vec<&LedgerEntry> = v
        .ledger
        .iter()
        .filter(|e| e.kind == "propagated" || e.kind == "deletion_confirmed")
        .collect();
    html! {
        section id="data" aria-labelledby="data-h" {
            h2 id="data-h" { "Where my data went" }
            @if went.is_empty() {
                p { "Nothing of yours has been shared with the partner." }
            } @else {
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "What" } } }
                    tbody {
                        @for e in &went {
                            tr class=(e.kind) { td { (when(e.at)) } td { (describe(e)) } }
                        }
                    }
                }
            }
            h2 id="timeline-h" { "Your consent timeline" }
            p class="muted" { "Every entry below is in the tamper-evident consent ledger. The receipt carries a proof of each." }
            table aria-labelledby="timeline-h" {
                thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Entry" } } }
                tbody {
                    @for e in v.ledger.iter().rev() {
                        tr { td { (when(e.at)) } td { (describe(e)) } td { code { (e.seq) } } }
                    }
                }
            }
            p {
                @if u.account.consent.accepted.is_some() {
                    a class="button secondary" href="/privacy/receipt.json" download { "Download my consent receipt" }
                    " "
                }
                a class="button secondary" href="/privacy/export.json" download { "Export my data" }
            }
        }
    }
}

fn business_section(u: &UserSession, v: &View) -> Markup {
    html! {
        section id="businesses" aria-labelledby="biz-h" {
            h2 id="biz-h" { "Businesses that may message me" }
            @if v.businesses.is_empty() {
                p { "No business may message you. A business needs your opt-in first." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Business" } th scope="col" { "May send" } th scope="col" { "Why" } th scope="col" { "Change" } } }
                    tbody {
                        @for b in &v.businesses { (business_row(&u.session, b)) }
                    }
                }
            }
            h2 id="blocked-h" { "Blocked people" }
            @if v.blocks.is_empty() {
                p { "You have not blocked anyone." }
            } @else {
                table aria-labelledby="blocked-h" {
                    thead { tr { th scope="col" { "Account" } th scope="col" { "Blocked" } th scope="col" { "Change" } } }
                    tbody {
                        @for (who, at) in &v.blocks {
                            tr {
                                td { code { (who) } }
                                td { (when(*at)) }
                                td {
                                    form class="inline" method="post" action="/privacy/unblock" {
                                        (csrf_field(&u.session))
                                        input type="hidden" name="account" value=(who);
                                        button type="submit" class="secondary" { "Unblock" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A business's name as a user may see it: the verified name with a
/// badge, never an unverified sender's chosen name.
fn business_name(b: &BusinessControl) -> Markup {
    match (&b.business.display_name, b.business.verified) {
        (Some(name), true) => {
            html! { (name) " " span class="badge ok" title="Verified by Accord" { "verified" } }
        }
        _ => html! { "Unverified business " code { (b.business.business) } },
    }
}

fn business_row(session: &WebSession, b: &BusinessControl) -> Markup {
    let muted_marketing = b.muted.contains(&Category::Marketing);
    let action = |value: &'static str, label: &str, class: &'static str| {
        html! {
            form class="inline" method="post" action="/privacy/business" {
                (csrf_field(session))
                input type="hidden" name="business" value=(b.business.business);
                input type="hidden" name="action" value=(value);
                button type="submit" class=(class) { (label) }
            }
        }
    };
    html! {
        tr {
            td { (business_name(b)) }
            td {
                @if b.may_send.is_empty() { "nothing" }
                @else { (b.may_send.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")) }
            }
            td { ul { @for w in &b.why { li { (w) } } } }
            td {
                @if b.blocked {
                    (action("unblock", "Unblock", "secondary"))
                } @else {
                    @if muted_marketing {
                        (action("unmute_marketing", "Unmute marketing", "secondary"))
                    } @else {
                        (action("mute_marketing", "Mute marketing", "secondary"))
                    }
                    " "
                    @if b.opted_in { (action("opt_out", "Opt out", "secondary")) " " }
                    (action("block", "Block", "danger"))
                }
            }
        }
    }
}

fn account_section(u: &UserSession) -> Markup {
    html! {
        section aria-labelledby="account-h" {
            h2 id="account-h" { "Delete my account" }
            p { "Deleting your account withdraws every consent, tells the partner to delete what it holds, and removes your devices. It cannot be undone." }
            form method="post" action="/privacy/delete" {
                (csrf_field(&u.session))
                label class="check" {
                    input type="checkbox" name="confirm" value="yes" required;
                    span { "I understand that my account and its messages are gone for good." }
                }
                p { button type="submit" class="danger" { "Delete my account" } }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct AcceptForm {
    version: u32,
    /// `share` when the `whatsapp-2016` sharing box was on the screen.
    shown: Option<String>,
    share: Option<String>,
    ads: Option<String>,
    product: Option<String>,
}

/// `POST /privacy/accept`.
pub async fn accept(State(s): State<AppState>, u: UserSession, p: Posted<AcceptForm>) -> Response {
    let f = p.form;
    let choice = if f.shown.as_deref() == Some("share") {
        // An unticked box sends nothing: absent means unticked.
        SharingChoice {
            share: Some(f.share.is_some()),
            grants: BTreeSet::new(),
        }
    } else {
        let mut grants = BTreeSet::new();
        if f.ads.is_some() {
            grants.insert(Purpose::Ads);
        }
        if f.product.is_some() {
            grants.insert(Purpose::Product);
        }
        SharingChoice {
            share: None,
            grants,
        }
    };
    let cmd = ConsentCommand::Accept {
        version: f.version,
        choice,
        channel: ConsentChannel::AcceptanceScreen,
    };
    after(
        &s,
        &u,
        s.messenger.consent_command_by(&u.account, cmd).await,
        "accepted",
    )
    .await
}

#[derive(Deserialize)]
pub struct ConsentForm {
    purpose: String,
    action: String,
}

/// `POST /privacy/consent`: grant or withdraw one purpose.
pub async fn consent(
    State(s): State<AppState>,
    u: UserSession,
    p: Posted<ConsentForm>,
) -> Response {
    let Ok(purpose) = p.form.purpose.parse::<Purpose>() else {
        return bad_form(&s, &u, "Unknown purpose.").await;
    };
    let (cmd, done) = match p.form.action.as_str() {
        "grant" => (
            ConsentCommand::Grant {
                purpose,
                channel: ConsentChannel::PrivacyCentre,
            },
            "granted",
        ),
        "withdraw" => (
            ConsentCommand::Withdraw {
                purpose,
                channel: ConsentChannel::PrivacyCentre,
            },
            "withdrawn",
        ),
        _ => return bad_form(&s, &u, "Unknown action.").await,
    };
    // A grant needs the policy in force accepted; a withdrawal never does.
    if done == "granted" {
        if let Access::Restricted { version, .. } = u.access {
            let r: Result<(), _> = Err(crate::service::ServiceError::Restricted { version });
            return after(&s, &u, r, done).await;
        }
    }
    after(
        &s,
        &u,
        s.messenger.consent_command_by(&u.account, cmd).await,
        done,
    )
    .await
}

async fn bad_form(s: &AppState, u: &UserSession, why: &str) -> Response {
    render(
        s,
        u,
        StatusCode::BAD_REQUEST,
        Notice::Refused(alert("error", why)),
    )
    .await
}

/// Redirects to the centre after a success (`?done=`); renders the
/// refusal in place otherwise.
async fn after<T>(
    s: &AppState,
    u: &UserSession,
    r: Result<T, crate::service::ServiceError>,
    done: &'static str,
) -> Response {
    match r {
        Ok(_) => web::see_other(&format!("/?done={done}"), None),
        Err(e) => {
            let (status, m) = match &e {
                crate::service::ServiceError::Consent(ConsentError::OptOutWindowClosed(closed)) => (
                    StatusCode::OK,
                    alert(
                        "error",
                        &format!(
                            "Refused: under this policy's whatsapp-2016 profile you can opt out only within {} days after accepting. Your window closed on {}.",
                            accord_domain::policy::OPT_OUT_WINDOW_DAYS,
                            when(*closed)
                        ),
                    ),
                ),
                _ => refusal(e),
            };
            // Fresh state: the refusal is shown against what is true now.
            let u2 = match s.messenger.account_access(u.account.id).await {
                Ok(Some((account, access))) => UserSession {
                    session: u.session.clone(),
                    account,
                    access,
                },
                _ => return web::see_other("/signin", None),
            };
            render(s, &u2, status, Notice::Refused(m)).await
        }
    }
}

#[derive(Deserialize)]
pub struct BusinessForm {
    business: AccountId,
    action: String,
}

/// `POST /privacy/business`: mute, block, opt out of one business.
pub async fn business_control(
    State(s): State<AppState>,
    u: UserSession,
    p: Posted<BusinessForm>,
) -> Response {
    let mut c = SetControls {
        opted_in: None,
        marketing: None,
        mute: Vec::new(),
        unmute: Vec::new(),
        blocked: None,
    };
    match p.form.action.as_str() {
        "block" => c.blocked = Some(true),
        "unblock" => c.blocked = Some(false),
        "mute_marketing" => c.mute.push(Category::Marketing),
        "unmute_marketing" => c.unmute.push(Category::Marketing),
        "opt_out" => c.opted_in = Some(false),
        _ => return bad_form(&s, &u, "Unknown action.").await,
    }
    if let Access::Restricted { version, .. } = u.access {
        let r: Result<(), _> = Err(crate::service::ServiceError::Restricted { version });
        return after(&s, &u, r, "business").await;
    }
    match s
        .business
        .set_controls(u.account.id, p.form.business, c)
        .await
    {
        Ok(_) => web::see_other("/?done=business", None),
        Err(e) => {
            let (status, m) = super::refusal(e);
            render(&s, &u, status, Notice::Refused(m)).await
        }
    }
}

#[derive(Deserialize)]
pub struct UnblockForm {
    account: AccountId,
}

/// `POST /privacy/unblock`.
pub async fn unblock(
    State(s): State<AppState>,
    u: UserSession,
    p: Posted<UnblockForm>,
) -> Response {
    match s.e2e.unblock(u.account.id, p.form.account).await {
        Ok(()) => web::see_other("/?done=unblocked", None),
        Err(e) => {
            let (status, m) = super::refusal(e);
            render(&s, &u, status, Notice::Refused(m)).await
        }
    }
}

fn download(name: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// `GET /privacy/receipt.json`: the consent receipt, as the API gives it.
pub async fn receipt(State(s): State<AppState>, u: UserSession) -> Response {
    match s.messenger.receipt(&u.account).await {
        Ok(r) => download(
            "accord-consent-receipt.json",
            serde_json::to_vec_pretty(&r).expect("a receipt serialises"),
        ),
        Err(e) => super::page_error(e).into_response(),
    }
}

/// `GET /privacy/export.json`: everything the messenger holds of the user.
pub async fn export(State(s): State<AppState>, u: UserSession) -> Response {
    match s.messenger.export(&u.account).await {
        Ok(x) => download(
            "accord-export.json",
            serde_json::to_vec_pretty(&x).expect("an export serialises"),
        ),
        Err(e) => super::page_error(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: Option<String>,
}

/// `POST /privacy/delete`: only with the confirmation ticked.
pub async fn delete(State(s): State<AppState>, u: UserSession, p: Posted<DeleteForm>) -> Response {
    if p.form.confirm.as_deref() != Some("yes") {
        return bad_form(&s, &u, "Tick the confirmation to delete your account.").await;
    }
    match s.messenger.delete(u.account.id).await {
        Ok(()) => {
            let body = html! {
                (alert("ok", "Your account is deleted. The partner is told to delete what it holds; the confirmation is recorded in the ledger."))
                p { a href="/signin" { "Back to sign-in" } }
            };
            let mut r = Page::ok(page(
                &super::public_frame("Privacy centre", "/"),
                "Account deleted",
                body,
            ))
            .into_response();
            r.headers_mut()
                .insert(header::SET_COOKIE, s.web.clear_cookie());
            r
        }
        Err(e) => {
            let (status, m) = refusal(e);
            render(&s, &u, status, Notice::Refused(m)).await
        }
    }
}
