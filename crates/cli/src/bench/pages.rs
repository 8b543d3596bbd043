//! `accord bench pages`: how long the messenger takes to render its pages
//! with `users` accounts in the database, measured from the client on
//! loopback (so an upper bound of the server-side render).
//!
//! Set-up, not measured: the real messenger (its `Application`, as `accord
//! serve` builds it) on SQLite in a temporary directory, or on PostgreSQL
//! in a database of its own; a `strict` policy; `users` accounts that
//! register and accept through the real API (as `accord bench consent`);
//! one of them registers a business with three templates. Then `sessions`
//! users sign in through the sign-in pages (the dev verifier shows the
//! code on the page), and the business and the operator sign in to their
//! consoles.
//!
//! The run: for each page (the privacy centre, the business console, the
//! operator console, the sign-in page), `requests` GETs from `clients`
//! closed-loop clients, after a warm-up of 50; a page that does not answer
//! 200 with HTML is an error and fails the run. Printed per page:
//! `<page>_p50_ms`, `<page>_p99_ms`, `<page>_max_ms`, and `errors`.

use super::consent::{err, set_up, BenchMessenger, Location, REQUEST_TIMEOUT};
use accord_crypto::token::BearerToken;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, String>;

#[derive(Clone, Debug)]
pub struct PagesBenchOptions {
    pub users: usize,
    /// Users signed in to the privacy centre (requests go round them).
    pub sessions: usize,
    /// Requests per page.
    pub requests: usize,
    pub clients: usize,
    pub database_url: Option<String>,
}

/// One page's latencies.
#[derive(Clone, Debug)]
pub struct PageFigures {
    pub page: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
}

#[derive(Clone, Debug)]
pub struct PagesBenchReport {
    pub users: usize,
    pub backend: &'static str,
    pub pages: Vec<PageFigures>,
}

impl std::fmt::Display for PagesBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backend: {}", self.backend)?;
        writeln!(f, "users: {}", self.users)?;
        for p in &self.pages {
            writeln!(f, "{}_bytes: {}", p.page, p.bytes)?;
            writeln!(f, "{}_p50_ms: {:.2}", p.page, p.p50_ms)?;
            writeln!(f, "{}_p99_ms: {:.2}", p.page, p.p99_ms)?;
            writeln!(f, "{}_max_ms: {:.2}", p.page, p.max_ms)?;
        }
        write!(f, "errors: 0")
    }
}

pub async fn run(opts: PagesBenchOptions) -> BenchResult<PagesBenchReport> {
    if opts.users == 0 || opts.users > super::consent::MAX_USERS {
        return Err(format!(
            "--users must be 1 to {}",
            super::consent::MAX_USERS
        ));
    }
    if opts.sessions == 0 || opts.sessions > opts.users {
        return Err("--sessions must be 1 to --users".into());
    }
    if opts.requests == 0 || opts.clients == 0 {
        return Err("--requests and --clients must be at least 1".into());
    }
    let location = Location::new(opts.database_url.as_deref())?;
    let result = tokio::select! {
        r = measure(&opts, &location) => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    let cleaned = location.clean_up().await;
    let report = result?;
    cleaned?;
    Ok(report)
}

async fn measure(opts: &PagesBenchOptions, location: &Location) -> BenchResult<PagesBenchReport> {
    let admin_token = BearerToken::generate();
    let m = BenchMessenger::start(location, &admin_token, Duration::from_secs(15)).await?;
    let base = m.base.clone();
    let result = async {
        let limit = super::consent::setup_limit(opts.users);
        let tokens = tokio::time::timeout(limit, set_up(&base, admin_token.reveal(), opts.users))
            .await
            .map_err(|_| format!("the set-up took longer than {} s", limit.as_secs()))??;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(opts.clients)
            .build()
            .map_err(err)?;
        let api_key = business(&http, &base, &tokens[0]).await?;
        eprintln!(
            "set-up: signing {} users in to the privacy centre",
            opts.sessions
        );
        let mut users = Vec::with_capacity(opts.sessions);
        for i in 0..opts.sessions {
            users.push(sign_in_user(&http, &base, i).await?);
        }
        let biz = sign_in_console(&http, &base, "/business", "api_key", &api_key).await?;
        let op = sign_in_console(&http, &base, "/operator", "token", admin_token.reveal()).await?;
        let mut pages = Vec::new();
        for (page, path, cookies) in [
            ("privacy_centre", "/", users.clone()),
            ("business_console", "/business", vec![biz.clone()]),
            ("operator_console", "/operator", vec![op.clone()]),
            ("signin", "/signin", vec![String::new()]),
        ] {
            eprintln!(
                "run: {} GET {path} from {} clients",
                opts.requests, opts.clients
            );
            pages.push(hammer(&http, &base, page, path, &cookies, opts).await?);
        }
        Ok::<_, String>(PagesBenchReport {
            users: opts.users,
            backend: location.backend(),
            pages,
        })
    }
    .await;
    m.stop().await;
    result
}

/// User 0 becomes a business with three templates; its API key.
async fn business(http: &reqwest::Client, base: &str, token: &str) -> BenchResult<String> {
    let created: serde_json::Value = http
        .post(format!("{base}/v1/business"))
        .bearer_auth(token)
        .json(&json!({ "display_name": "Bench Shop" }))
        .send()
        .await
        .map_err(err)?
        .error_for_status()
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    let key = created["api_key"]
        .as_str()
        .ok_or("no API key in the answer")?
        .to_owned();
    for (name, category) in [
        ("order_receipt", "utility"),
        ("login_code", "authentication"),
        ("weekly_deals", "marketing"),
    ] {
        http.post(format!("{base}/v1/business/templates"))
            .bearer_auth(&key)
            .json(&json!({ "name": name, "language": "en", "category": category, "body": "Hello {{1}}, see {{2}}." }))
            .send()
            .await
            .map_err(err)?
            .error_for_status()
            .map_err(err)?;
    }
    Ok(key)
}

/// The `Set-Cookie` value (name=value) of a response.
fn cookie_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// The CSRF token of the first form on a page.
fn csrf_in(html: &str) -> BenchResult<String> {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(str::to_owned)
        .ok_or_else(|| "a page without its form's token".to_owned())
}

/// A sign-in page's anonymous session cookie and its form's token.
async fn form_of(http: &reqwest::Client, url: &str) -> BenchResult<(String, String)> {
    let r = http.get(url).send().await.map_err(err)?;
    let cookie = cookie_of(&r).ok_or_else(|| format!("{url} set no cookie"))?;
    let csrf = csrf_in(&r.text().await.map_err(err)?)?;
    Ok((cookie, csrf))
}

/// Signs user `i` in through the pages; its session cookie.
async fn sign_in_user(http: &reqwest::Client, base: &str, i: usize) -> BenchResult<String> {
    let phone = format!("+6281235{:05}", i + 1);
    let (anon, csrf) = form_of(http, &format!("{base}/signin")).await?;
    let page = http
        .post(format!("{base}/signin"))
        .header("cookie", &anon)
        .form(&[("csrf", csrf.as_str()), ("phone", phone.as_str())])
        .send()
        .await
        .map_err(err)?
        .text()
        .await
        .map_err(err)?;
    let code = page
        .split("Your code is ")
        .nth(1)
        .and_then(|r| r.get(..6))
        .ok_or_else(|| format!("user {i}: no code on the page"))?;
    let registration = page
        .split("name=\"registration\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or_else(|| format!("user {i}: no registration on the page"))?;
    let r = http
        .post(format!("{base}/signin/code"))
        .header("cookie", &anon)
        .form(&[
            ("csrf", csrf.as_str()),
            ("registration", registration),
            ("code", code),
        ])
        .send()
        .await
        .map_err(err)?;
    if r.status() != 303 {
        return Err(format!("user {i}: sign-in answered {}", r.status()));
    }
    cookie_of(&r).ok_or_else(|| format!("user {i}: no session cookie"))
}

/// Signs in to a console with `field` = `secret`; its session cookie.
async fn sign_in_console(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    field: &str,
    secret: &str,
) -> BenchResult<String> {
    let (anon, csrf) = form_of(http, &format!("{base}{path}")).await?;
    let r = http
        .post(format!("{base}{path}/signin"))
        .header("cookie", &anon)
        .form(&[("csrf", csrf.as_str()), (field, secret)])
        .send()
        .await
        .map_err(err)?;
    if r.status() != 303 {
        return Err(format!("{path}: sign-in answered {}", r.status()));
    }
    cookie_of(&r).ok_or_else(|| format!("{path}: no session cookie"))
}

/// One GET; its latency and size. Anything but 200 with HTML is an error.
async fn one(http: &reqwest::Client, url: &str, cookie: &str) -> BenchResult<(Duration, usize)> {
    let mut r = http.get(url);
    if !cookie.is_empty() {
        r = r.header("cookie", cookie);
    }
    let started = Instant::now();
    let resp = r.send().await.map_err(err)?;
    let status = resp.status();
    let html = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let body = resp.bytes().await.map_err(err)?;
    let took = started.elapsed();
    if status != 200 || !html {
        return Err(format!("{url} answered {status}"));
    }
    Ok((took, body.len()))
}

/// `requests` GETs of `path` from `clients` closed-loop clients, going
/// round `cookies`.
async fn hammer(
    http: &reqwest::Client,
    base: &str,
    page: &'static str,
    path: &str,
    cookies: &[String],
    opts: &PagesBenchOptions,
) -> BenchResult<PageFigures> {
    let url = Arc::new(format!("{base}{path}"));
    let cookies = Arc::new(cookies.to_vec());
    for i in 0..50 {
        one(http, &url, &cookies[i % cookies.len()]).await?;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..opts.clients {
        let (next, url, cookies, http) = (next.clone(), url.clone(), cookies.clone(), http.clone());
        let total = opts.requests;
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut bytes = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let (took, n) = one(&http, &url, &cookies[i % cookies.len()]).await?;
                lat.push(took);
                bytes = n;
            }
            Ok::<_, String>((lat, bytes))
        });
    }
    let mut all = Vec::with_capacity(opts.requests);
    let mut bytes = 0;
    while let Some(j) = set.join_next().await {
        let (lat, n) = j.map_err(err)??;
        all.extend(lat);
        bytes = bytes.max(n);
    }
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1]);
    Ok(PageFigures {
        page,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: ms(*all.last().expect("requests ran")),
        bytes,
    })
}
