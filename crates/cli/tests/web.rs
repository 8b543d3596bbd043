//! The pages in a real browser: Debian's `chromium`, headless, driven
//! through `chromedriver` (WebDriver, fantoccini) against `accord serve
//! --dev --simulated-clock`, as people use them:
//!
//! - an operator publishes a policy and sees the feed's health; reviews a
//!   template and verifies a business; sees the key service's quota use
//!   on its own page;
//! - an advertiser signs in to the partner's console and sees a noised size;
//! - a user signs in with a code, accepts with every box unticked, grants
//!   and withdraws a purpose, and sees the partner's confirmed deletion;
//! - a business whose display name carries a `<script>` sees its quality
//!   turn red after a user blocks it from the privacy centre;
//! - under `whatsapp-2016`, an opt-out after the window is refused on
//!   screen, with the date it closed.
//!
//! Every page visited passes axe-core (from the npm registry, injected
//! into the page) with no serious or critical violation, is saved as a
//! screenshot under `<target>/tmp/browser/`, and any console error fails
//! the test. `scripts/test` installs chromium, chromium-driver and
//! axe-core when they are missing; without them this test fails and says
//! what to install.
//!
//! The cross-site form post and the escaping of stored script are also
//! tried without a browser, at the HTTP level (`forms_from_elsewhere_*`).

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where axe-core is: `ACCORD_AXE_JS`, or where `scripts/test` installs it.
fn axe_source() -> String {
    let path = std::env::var("ACCORD_AXE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../.cache/npm/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is not at {} ({e}): run scripts/test, which installs it with npm",
            path.display()
        )
    })
}

struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
    axe: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: run scripts/test, which installs Debian's chromium and chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless chromium");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            driver,
            shots,
            axe: axe_source(),
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    /// Clicks the submit button whose text contains `label`, and waits for
    /// the page it leads to.
    async fn press(&self, label: &str) {
        let xpath = format!("//button[contains(normalize-space(.), '{label}')]");
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button {label:?}: {e}"))
            .click()
            .await
            .unwrap();
        self.loaded_after(old).await;
    }

    /// Waits until `old` (the previous page's root) is gone and the new
    /// page has loaded.
    async fn loaded_after(&self, old: fantoccini::elements::Element) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while old.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "the page did not change");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        loop {
            let state = self
                .client
                .execute("return document.readyState", vec![])
                .await
                .unwrap();
            if state == "complete" {
                return;
            }
            assert!(Instant::now() < deadline, "the page did not load");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Moves the focus with Tab from where it is until the element with
    /// `id` has it (at most 20 presses): the page works from the keyboard.
    async fn tab_to(&self, id: &str) {
        for _ in 0..20 {
            let active = self.client.active_element().await.unwrap();
            if active.attr("id").await.unwrap().as_deref() == Some(id) {
                return;
            }
            active
                .send_keys(&char::from(fantoccini::key::Key::Tab).to_string())
                .await
                .unwrap();
        }
        panic!("Tab never reached #{id}");
    }

    /// Types into the focused element and presses Enter (which submits
    /// its form), then waits for the next page.
    async fn type_enter(&self, text: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        let active = self.client.active_element().await.unwrap();
        active.send_keys(text).await.unwrap();
        active
            .send_keys(&char::from(fantoccini::key::Key::Enter).to_string())
            .await
            .unwrap();
        self.loaded_after(old).await;
    }

    /// Reloads until the page says `needle` (the feed and the partner
    /// work in the background), at most `secs`.
    async fn until(&self, url: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.goto(url).await;
            let t = self.text().await;
            if t.contains(needle) {
                return t;
            }
            assert!(Instant::now() < deadline, "{needle:?} never appeared:\n{t}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// axe-core on the page (0 serious or critical violations), a
    /// screenshot, and no console error so far. Returns the violations'
    /// summary for the record.
    async fn check(&self, name: &str) -> Vec<String> {
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        self.client.execute(&self.axe, vec![]).await.unwrap();
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                    .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help }))))
                    .catch(e => done([{ id: 'axe-error', impact: 'critical', nodes: 0, help: String(e) }]));",
                vec![],
            )
            .await
            .unwrap();
        let violations = result.as_array().cloned().unwrap_or_default();
        let blocking: Vec<&Value> = violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(
            blocking.is_empty(),
            "{name}: axe found serious or critical violations: {blocking:#?}"
        );
        self.assert_console_clean(name).await;
        eprintln!(
            "page {name}: axe {} violation(s), none serious or critical; screenshot {}",
            violations.len(),
            path.display()
        );
        violations
            .iter()
            .map(|v| format!("{} ({})", v["id"], v["impact"]))
            .collect()
    }

    /// The two checks find what they look for: an unlabelled field is a
    /// critical axe violation, and a console error reaches the log. Run on
    /// a page already checked; it is reloaded after.
    async fn checks_can_fail(&self) {
        self.client
            .execute(
                "const i = document.createElement('input'); i.type = 'text'; document.body.appendChild(i); console.error('probe');",
                vec![],
            )
            .await
            .unwrap();
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document).then(r => done(r.violations.map(v => v.id)));",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            found.as_array().unwrap().iter().any(|v| v == "label"),
            "axe finds an unlabelled field: {found}"
        );
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        assert!(
            log.as_array()
                .unwrap()
                .iter()
                .any(|e| e["level"] == "SEVERE"
                    && e["message"].as_str().unwrap_or("").contains("probe")),
            "the console log is read: {log}"
        );
        self.client.refresh().await.unwrap();
    }

    /// Fails on any console message of level SEVERE since the last call
    /// (chromedriver's log endpoint; a CSP violation, a script error or a
    /// failed load all land there).
    async fn assert_console_clean(&self, name: &str) {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        let severe: Vec<&Value> = entries
            .as_array()
            .map(|a| a.iter().filter(|e| e["level"] == "SEVERE").collect())
            .unwrap_or_default();
        assert!(severe.is_empty(), "{name}: console errors: {severe:#?}");
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

fn admin_token(server: &Server) -> String {
    std::fs::read_to_string(server.data.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Signs `phone` in to the privacy centre with the code the dev server
/// shows on the page.
async fn sign_in_user(b: &Browser, base: &str, phone: &str, shot: Option<&str>) {
    b.goto(&format!("{base}/signin")).await;
    if let Some(name) = shot {
        b.check(&format!("{name}-phone")).await;
    }
    // From the keyboard alone: Tab to the field, type, Enter.
    b.tab_to("phone").await;
    b.type_enter(phone).await;
    let t = b.text().await;
    let code = t
        .split("Your code is ")
        .nth(1)
        .and_then(|r| r.get(..6))
        .unwrap_or_else(|| panic!("the dev server shows the code: {t}"))
        .to_owned();
    if let Some(name) = shot {
        b.check(&format!("{name}-code")).await;
    }
    b.tab_to("code").await;
    b.type_enter(&code).await;
    let t = b.text().await;
    assert!(t.contains("Your privacy"), "signed in: {t}");
}

async fn sign_out(b: &Browser) {
    b.press("Sign out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_use_the_pages_in_a_real_browser() {
    let server = Server::start_with(&["--simulated-clock", "--business-quality-min-sample", "3"]);
    let base = server.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let b = Browser::start().await;
    let mut record = Vec::new();

    // A user with an account from before any policy: the acceptance
    // screen is theirs to see.
    let ana = register(&server, dir.path(), "ana", "+14155550141");

    // The operator signs in and publishes the first policy.
    b.goto(&format!("{base}/operator")).await;
    record.push(("operator-signin", b.check("operator-signin").await));
    b.checks_can_fail().await;
    b.fill("#token", &admin_token(&server)).await;
    b.press("Sign in").await;
    b.fill(
        "#text",
        "We share your account information with the partner only for what you grant.",
    )
    .await;
    b.press("Publish").await;
    let t = b.text().await;
    assert!(t.contains("Published version 1"), "{t}");
    assert!(
        t.contains("Coordination feed") && t.contains("Held by the partner"),
        "{t}"
    );
    record.push(("operator-console", b.check("operator-console").await));
    b.press("Verify the whole ledger").await;
    let t = b.text().await;
    assert!(t.contains("The ledger verifies: 2 entries"), "{t}");
    sign_out(&b).await;

    // The user signs in, sees the deadline, accepts with every box
    // unticked: nothing is granted.
    sign_in_user(&b, &base, "+14155550141", Some("signin")).await;
    let t = b.text().await;
    assert!(t.contains("left to accept version 1"), "{t}");
    record.push((
        "privacy-centre-accept",
        b.check("privacy-centre-accept").await,
    ));
    b.press("Agree to version 1").await;
    let t = b.text().await;
    assert!(t.contains("Your choice is recorded"), "{t}");
    assert!(
        t.contains("Refused ads") && !t.contains("Withdraw ads"),
        "{t}"
    );
    // Grant ads: the partner gets it (the feed runs in the background).
    b.press("Grant ads").await;
    b.until(&format!("{base}/"), "Shared with the partner for ads", 30)
        .await;
    // Withdraw: the partner confirms the deletion, and the page shows it.
    b.press("Withdraw ads").await;
    let t = b
        .until(
            &format!("{base}/"),
            "The partner confirmed it deleted your data for ads",
            30,
        )
        .await;
    assert!(
        t.contains("Withdrew ads") && t.contains("Granted ads"),
        "{t}"
    );
    record.push(("privacy-centre", b.check("privacy-centre").await));
    sign_out(&b).await;
    drop(ana);

    // A business whose chosen name carries a script.
    let shop = register(&server, dir.path(), "shop", "+6281355500071");
    let u1 = register(&server, dir.path(), "u1", "+6281355500072");
    let u2 = register(&server, dir.path(), "u2", "+6281355500073");
    let evil = "Toko <script>document.title='owned'</script>";
    ok(&[
        "business",
        "register",
        "--session",
        shop.s(),
        "--name",
        evil,
    ]);
    ok(&[
        "business",
        "templates",
        "submit",
        "--session",
        shop.s(),
        "--name",
        "order_receipt",
        "--category",
        "utility",
        "--body",
        "Order {{1}} paid",
    ]);
    // The operator reviews the template and verifies the business in the
    // console.
    b.goto(&format!("{base}/operator")).await;
    b.fill("#token", &admin_token(&server)).await;
    b.press("Sign in").await;
    let t = b.text().await;
    assert!(
        t.contains("order_receipt"),
        "the template waits for review: {t}"
    );
    record.push(("operator-review", b.check("operator-review").await));
    b.press("Approve").await;
    assert!(b.text().await.contains("is now approved"));
    b.press("Verify Toko").await;
    let t = b.text().await;
    assert!(t.contains("The business is verified"), "{t}");
    let html = b.client.source().await.unwrap();
    assert!(
        html.contains("Toko &lt;script&gt;") && !html.contains("<script>document"),
        "the stored name renders as text"
    );
    sign_out(&b).await;

    // Two users opt in and get a receipt each.
    for u in [&u1, &u2] {
        ok(&[
            "business",
            "optin",
            "--session",
            u.s(),
            "--business",
            "+6281355500071",
        ]);
    }
    let (mut agent_child, agent_url) = agent(&shop, &[]);
    for to in ["+6281355500072", "+6281355500073"] {
        ok(&[
            "business",
            "send",
            "--session",
            shop.s(),
            "--agent",
            agent_url.as_str(),
            "--to",
            to,
            "--template",
            "order_receipt",
            "--param",
            "A-1",
        ]);
    }
    for u in [&u1, &u2] {
        let got = listen(u, 1);
        assert!(got.iter().any(|l| l.contains("Order A-1 paid")), "{got:?}");
    }
    let _ = agent_child.kill();
    let _ = agent_child.wait();

    // The business signs in to its console: green, too few to rate.
    let key_file = shop.session.with_extension("business.json");
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    b.goto(&format!("{base}/business")).await;
    record.push(("business-signin", b.check("business-signin").await));
    b.fill("#api_key", &api_key).await;
    b.press("Sign in").await;
    let t = b.text().await;
    assert!(t.contains("green") && t.contains("order_receipt"), "{t}");
    sign_out(&b).await;

    // A user blocks it from the privacy centre.
    sign_in_user(&b, &base, "+6281355500072", None).await;
    let t = b.text().await;
    assert!(t.contains("verified") && t.contains("Toko <script>"), "{t}");
    record.push((
        "privacy-centre-businesses",
        b.check("privacy-centre-businesses").await,
    ));
    b.press("Block").await;
    assert!(b
        .text()
        .await
        .contains("settings for that business are saved"));
    sign_out(&b).await;

    // Its webhook points at a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    ok(&[
        "business",
        "webhooks",
        "set",
        "--session",
        shop.s(),
        "--url",
        &format!("http://{dead}/hook"),
    ]);

    // The business sees its quality change, with the reason.
    b.goto(&format!("{base}/business")).await;
    b.fill("#api_key", &api_key).await;
    b.press("Sign in").await;
    let quality = b
        .client
        .find(Locator::Css("#quality"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(quality, "red", "{}", b.text().await);
    let t = b.text().await;
    assert!(t.contains("1 blocks and 0 reports per 2 delivered"), "{t}");
    assert!(t.contains("marketing templates are paused"), "{t}");
    record.push(("business-console", b.check("business-console").await));
    // The test event fails on screen, with why.
    b.press("Send test event").await;
    let t = b.text().await;
    assert!(
        t.contains("not delivered") && t.contains("could not connect to the receiver"),
        "{t}"
    );
    record.push((
        "business-webhook-test",
        b.check("business-webhook-test").await,
    ));
    sign_out(&b).await;

    // The key service's operator page: quota use of the day.
    let keyd = server
        .log
        .lock()
        .unwrap()
        .split("key service listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("accord serve printed the key service's address")
        .to_owned();
    b.goto(&format!("{keyd}/operator")).await;
    b.fill("#token", &admin_token(&server)).await;
    b.press("Sign in").await;
    let t = b.text().await;
    assert!(t.contains("Quota use today"), "{t}");
    assert!(t.contains("device") && t.contains("contacts"), "{t}");
    assert!(t.contains("messenger") && t.contains("coordination"), "{t}");
    record.push(("keyd-quota-use", b.check("keyd-quota-use").await));

    // The partner's advertiser console: an audience's noised size.
    let partner = server.url_of("partner");
    let out = ok(&[
        "audience",
        "advertiser",
        "--name",
        "Toko Web",
        "--partner",
        &partner,
        "--keyd",
        &keyd,
        "--admin-token",
        &admin_token(&server),
    ]);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .expect("advertiser printed its tokens")
            .to_owned()
    };
    let (adv, adv_keyd) = (field("token"), field("keyd_token"));
    ok(&[
        "audience",
        "create",
        "--audience",
        "regulars",
        "--partner",
        &partner,
        "--token",
        &adv,
    ]);
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), "phone,email\n+6281234500001,a@example.com\n").unwrap();
    ok(&[
        "audience",
        "upload",
        "--audience",
        "regulars",
        "--file",
        list.path().to_str().unwrap(),
        "--partner",
        &partner,
        "--token",
        &adv,
        "--keyd",
        &keyd,
        "--keyd-token",
        &adv_keyd,
        "--quiet",
    ]);
    b.goto(&format!("{partner}/advertiser")).await;
    b.fill("#token", "not a token").await;
    b.press("Sign in").await;
    assert!(b.text().await.contains("That is not an advertiser token."));
    // That answer is a 401, which the browser logs: read it off.
    let refused = b.client.issue_cmd(BrowserLog).await.unwrap();
    assert!(refused.to_string().contains("401"), "{refused}");
    b.fill("#token", &adv).await;
    b.press("Sign in").await;
    let t = b.text().await;
    assert!(
        t.contains("regulars") && t.contains("fewer than 100"),
        "{t}"
    );
    assert!(t.contains("ε 2.500"), "one release spent: {t}");
    record.push(("advertiser-console", b.check("advertiser-console").await));

    b.close().await;
    for (page, v) in &record {
        eprintln!("axe {page}: {v:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_after_the_window_is_refused_on_screen() {
    let server = Server::start_with(&["--simulated-clock", "--profile", "whatsapp-2016"]);
    let base = server.url.clone();
    let data = server.data.path().to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    register(&server, dir.path(), "bo", "+14155550142");
    let text = dir.path().join("policy.txt");
    std::fs::write(&text, "The 2016 terms.").unwrap();
    ok(&[
        "admin",
        "publish-policy",
        "--server",
        &base,
        "--data-dir",
        &data,
        "--text-file",
        text.to_str().unwrap(),
        "--purpose",
        "ads",
        "--purpose",
        "product",
    ]);
    let b = Browser::start().await;
    sign_in_user(&b, &base, "+14155550142", None).await;
    let t = b.text().await;
    assert!(t.contains("ticked unless you untick it"), "{t}");
    let ticked = b
        .client
        .find(Locator::Css("input[name=share]"))
        .await
        .unwrap()
        .prop("checked")
        .await
        .unwrap();
    assert_eq!(ticked.as_deref(), Some("true"), "the box comes ticked");
    b.check("privacy-centre-2016-accept").await;
    b.press("Agree to version 1").await;
    let t = b.text().await;
    assert!(
        t.contains("granted (pre-ticked box)") && t.contains("left (closes"),
        "{t}"
    );
    // 31 days later the window is closed.
    ok(&[
        "admin",
        "clock",
        "--server",
        &base,
        "--data-dir",
        &data,
        "--advance-days",
        "31",
    ]);
    b.goto(&format!("{base}/")).await;
    b.press("Withdraw ads").await;
    let t = b.text().await;
    assert!(
        t.contains("you can opt out only within 30 days after accepting"),
        "the refusal is on screen, with the rule: {t}"
    );
    let closed = t
        .split("Your window closed on ")
        .nth(1)
        .and_then(|r| r.split(" UTC.").next())
        .unwrap_or_else(|| panic!("and the date: {t}"));
    assert!(
        t.contains(&format!("The opt-out window closed on {closed} UTC.")),
        "the date is the window's: {t}"
    );
    assert!(
        t.contains("granted (pre-ticked box)"),
        "nothing changed: {t}"
    );
    b.check("privacy-centre-2016-refused").await;
    // The export is a download of the user's own data.
    let href = b
        .client
        .find(Locator::LinkText("Export my data"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap();
    assert_eq!(href.as_deref(), Some("/privacy/export.json"));
    // Deleting the account needs the confirmation ticked.
    b.client
        .find(Locator::Css("input[name=confirm]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.press("Delete my account").await;
    let t = b.text().await;
    assert!(t.contains("Your account is deleted"), "{t}");
    b.check("privacy-centre-deleted").await;
    // Signed out: the centre sends the browser to sign-in.
    b.goto(&format!("{base}/")).await;
    assert!(b.text().await.contains("Send code"));
    b.close().await;
}

/// A form posted from another site fails, whatever it carries; a form
/// without the session's token, or with another session's, fails (at the
/// HTTP level: an attacker need not use a browser).
#[tokio::test]
async fn forms_from_elsewhere_are_refused() {
    let server = Server::start_with(&["--simulated-clock"]);
    let base = server.url.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The operator signs in (a real session with its CSRF token).
    let page = http.get(format!("{base}/operator")).send().await.unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csp = page
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let body = page.text().await.unwrap();
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let signin = http
        .post(format!("{base}/operator/signin"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("token", admin_token(&server).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), 303);
    let set = signin
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let op_cookie = set.split(';').next().unwrap().to_owned();
    let console = http
        .get(format!("{base}/operator"))
        .header("cookie", &op_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let op_csrf = console
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let publish = |headers: &[(&str, &str)], csrf: &str| {
        let mut r = http
            .post(format!("{base}/operator/policies"))
            .header("cookie", &op_cookie);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.form(&[
            ("csrf", csrf),
            ("text", "hijacked"),
            ("ads", "yes"),
            ("profile", "strict"),
        ])
        .send()
    };
    // Another site's page posting with the browser's cookie.
    let r = publish(&[("origin", "http://evil.example")], &op_csrf)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("sent from another site"));
    let r = publish(&[("sec-fetch-site", "cross-site")], &op_csrf)
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Without the token, or with another session's.
    assert_eq!(publish(&[], "").await.unwrap().status(), 403);
    assert_eq!(publish(&[], &csrf).await.unwrap().status(), 403);
    let (code, out, _) = accord(&[
        "admin",
        "policies",
        "--server",
        &base,
        "--data-dir",
        server.data.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(!out.contains("version 1"), "nothing was published: {out}");
    // The same form from the page itself works.
    let r = publish(&[("origin", base.as_str())], &op_csrf)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Published version 1"));

    // A page without a session goes to sign-in; an API route still
    // answers JSON.
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/signin");
    let r = http.get(format!("{base}/v1/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("\"code\""));
    // Every page checks who is calling: the consoles show their sign-in,
    // the downloads go to sign-in, and every form refuses a post without
    // a session.
    for (path, needle) in [("/business", "API key"), ("/operator", "Admin token")] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        let body = r.text().await.unwrap();
        assert!(
            body.contains(needle) && !body.contains("Sign out"),
            "{path}: {body}"
        );
    }
    for path in ["/privacy/receipt.json", "/privacy/export.json"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
    }
    for path in [
        "/privacy/accept",
        "/privacy/consent",
        "/privacy/business",
        "/privacy/unblock",
        "/privacy/delete",
        "/signin",
        "/signin/code",
        "/signout",
        "/business/signin",
        "/business/webhook-test",
        "/operator/signin",
        "/operator/policies",
        "/operator/ledger/verify",
        "/operator/templates",
        "/operator/businesses",
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .form(&[("csrf", "x")])
            .send()
            .await
            .unwrap();
        // A privacy-centre form goes to sign-in first; the rest refuse.
        assert!(
            matches!(r.status().as_u16(), 303 | 403),
            "{path} without a session: {}",
            r.status()
        );
    }
    // An anonymous session is not an operator's.
    let r = http
        .get(format!("{base}/operator"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(!r.text().await.unwrap().contains("Sign out"));
}
