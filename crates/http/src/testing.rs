//! A sweep over every documented route of a running service, for the
//! services' API tests (feature `testing`): it reads the service's own
//! `/openapi.json` and checks that, whatever is wrong with a request, the
//! answer is the JSON error body with a stable code:
//!
//! - every operation with a `security` requirement, called without a
//!   token: 401 `unauthorized`;
//! - every operation with a request body, with a malformed JSON body (and
//!   the caller's credentials): 400 `invalid_json` (routes signed by HMAC
//!   instead of a token: 401 `bad_signature`);
//! - the same with a body over the service's limit: 413
//!   `payload_too_large`;
//! - every path with each method that it does not document: 405
//!   `method_not_allowed` (the router serves no method the document does
//!   not list; with `utoipa-axum` it serves no path it does not list);
//! - a path that does not exist: 404 `not_found`.

use crate::ErrorBody;
use serde_json::Value;

/// What the sweep needs to know of a service.
pub struct Sweep<'a> {
    pub base_url: &'a str,
    /// A token of a caller with full access, for `bearer` operations.
    pub bearer: &'a str,
    /// The operator's token, for `admin` operations.
    pub admin: &'a str,
    /// A business's API key, for `api_key` operations (`bearer` if none).
    pub api_key: Option<&'a str>,
    /// Values for the path parameters (`{name}`) the document uses.
    pub params: &'a [(&'a str, &'a str)],
    /// Routes authenticated by a signature over the body, not a token.
    pub signed: &'a [&'a str],
    /// The service's body limit ...
    pub body_limit: usize,
    /// ... and the routes with a limit of their own.
    pub route_limits: &'a [(&'a str, usize)],
}

/// What the sweep did.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests sent and checked.
    pub checked: usize,
    /// Every answer that was not the expected JSON error.
    pub failures: Vec<String>,
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

impl Sweep<'_> {
    pub async fn run(&self) -> Report {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("reqwest client");
        let doc: Value = http
            .get(format!("{}/openapi.json", self.base_url))
            .send()
            .await
            .expect("GET /openapi.json")
            .json()
            .await
            .expect("the document is JSON");
        let paths = doc["paths"].as_object().expect("the document has paths");
        let mut report = Report::default();
        for (template, item) in paths {
            let path = self.fill(template);
            let documented: Vec<&str> = METHODS
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .collect();
            for &method in &documented {
                let op = &item[method];
                let scheme = op["security"]
                    .as_array()
                    .and_then(|s| s.first())
                    .and_then(|s| s.as_object())
                    .and_then(|s| s.keys().next().cloned());
                let token = match scheme.as_deref() {
                    Some("admin") => Some(self.admin),
                    Some("api_key") => Some(self.api_key.unwrap_or(self.bearer)),
                    Some(_) => Some(self.bearer),
                    None => None,
                };
                let what = format!("{} {template}", method.to_uppercase());
                if scheme.is_some() {
                    let r = send(&http, method, &self.url(&path), None, Some(b"{}".to_vec())).await;
                    report.expect(&what, "without a token", r, 401, "unauthorized");
                }
                if op.get("requestBody").is_some() {
                    let signed = self.signed.contains(&template.as_str());
                    let (status, code) = if signed {
                        (401, "bad_signature")
                    } else {
                        (400, "invalid_json")
                    };
                    let r =
                        send(&http, method, &self.url(&path), token, Some(b"{,".to_vec())).await;
                    report.expect(&what, "with malformed JSON", r, status, code);
                    let mut big = b"{\"pad\":\"".to_vec();
                    let limit = self
                        .route_limits
                        .iter()
                        .find(|(t, _)| t == template)
                        .map_or(self.body_limit, |(_, l)| *l);
                    big.resize(limit + 64 * 1024, b'a');
                    big.extend_from_slice(b"\"}");
                    let r = send(&http, method, &self.url(&path), token, Some(big)).await;
                    report.expect(
                        &what,
                        "with a body over the limit",
                        r,
                        413,
                        "payload_too_large",
                    );
                }
            }
            // Every method the document does not list for this path must be
            // refused by the router: the router serves no more than the
            // document says.
            for other in METHODS.into_iter().filter(|m| !documented.contains(m)) {
                let what = format!("{} {template}", other.to_uppercase());
                let r = send(&http, other, &self.url(&path), Some(self.admin), None).await;
                report.expect(&what, "(undocumented method)", r, 405, "method_not_allowed");
            }
        }
        let r = send(
            &http,
            "get",
            &self.url("/v1/no/such/route"),
            Some(self.admin),
            None,
        )
        .await;
        report.expect(
            "GET /v1/no/such/route",
            "(unknown path)",
            r,
            404,
            "not_found",
        );
        report
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The template with every `{name}` replaced by its value.
    fn fill(&self, template: &str) -> String {
        let mut out = template.to_owned();
        while let Some(start) = out.find('{') {
            let end = start + out[start..].find('}').expect("closed path parameter");
            let name = &out[start + 1..end];
            let value = self
                .params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| {
                    panic!("the sweep needs a value for path parameter `{name}` ({template})")
                });
            out.replace_range(start..=end, value);
        }
        out
    }
}

/// `GET /metrics` with `token` (if any): the status and the text.
pub async fn scrape(base_url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("{base_url}/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("GET /metrics answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("a body"))
}

/// Status, content type and body of an answer, or why there was none.
type Answer = Result<(u16, String, String), String>;

async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut req = http.request(m, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let r = req.send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.map_err(|e| format!("no body: {e}"))?;
    Ok((status, ct, text))
}

impl Report {
    fn expect(&mut self, what: &str, how: &str, answer: Answer, status: u16, code: &str) {
        self.checked += 1;
        let problem = match answer {
            Err(e) => Some(e),
            Ok((s, ct, text)) => {
                let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
                match body {
                    _ if !ct.starts_with("application/json") => {
                        Some(format!("{s} with content type `{ct}`: {text:.200}"))
                    }
                    None => Some(format!("{s}, not the error body: {text:.200}")),
                    Some(b) if s != status || b.code != code || b.message.is_empty() => {
                        Some(format!(
                            "{s} `{}` ({}), expected {status} `{code}`",
                            b.code, b.message
                        ))
                    }
                    Some(_) => None,
                }
            }
        };
        if let Some(p) = problem {
            self.failures.push(format!("{what} {how}: {p}"));
        }
    }
}
