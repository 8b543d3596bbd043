//! `accord demo`: the consent story end to end, against a real server
//! (the same router as `accord serve`) on an ephemeral loopback port, with
//! SQLite in `<data-dir>/demo` and a simulated clock. Every step goes
//! through the HTTP API, as a device or the operator would. The business
//! chapter is below; the custom-audience chapter is `demo_audience.rs`.

use super::serve::in_process_keys;
use super::DataArgs;
use crate::error::{CliError, CliResult};
use accord_client::{AcceptChoice, Client, ConsentView};
use accord_crypto::token::{BearerToken, TokenHash};
use accord_domain::{Clock, DeviceInfo, PhoneNumber, Purpose, SimulatedClock, Timestamp};
use accord_messenger::transparency::SignerSource;
use accord_messenger::verifier::DevVerifier;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Data directory; the demo keeps its database in <data-dir>/demo,
    /// recreated on every run.
    #[arg(long, env = "ACCORD_DATA_DIR", default_value = "./accord-data")]
    pub data_dir: PathBuf,
}

fn device(model: &str) -> DeviceInfo {
    DeviceInfo {
        os: "android".into(),
        os_version: "15".into(),
        model: model.into(),
        app_version: "2.26.1".into(),
        locale: "id-ID".into(),
        carrier: Some("51010".into()),
    }
}

pub(super) fn shared(v: &ConsentView) -> String {
    if v.granted_now.is_empty() {
        "nothing".into()
    } else {
        v.granted_now
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

pub(super) struct Demo {
    base: String,
    admin: Client,
    step: u32,
    feed: accord_messenger::feed::Dispatcher,
    pub(super) partner: accord_partner::PartnerService,
    pub(super) partner_url: String,
    pub(super) keyd: accord_keyd::KeyService,
    pub(super) keyd_url: String,
    store: Arc<accord_storage::SqlMessengerStore>,
    log_key: accord_domain::transparency::LogKey,
}

impl Demo {
    /// Runs the coordination feed until it is idle and says what the
    /// partner holds now.
    pub(super) async fn feed(&self) -> CliResult {
        let r = self
            .feed
            .drain(20)
            .await
            .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
        let st = self
            .partner
            .stats()
            .await
            .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
        println!(
            "    feed: {} event(s) sent, {} propagation(s) and {} confirmed deletion(s) recorded in the ledger;",
            r.events_sent, r.shared, r.deletions_confirmed
        );
        println!(
            "          the partner holds {} ads and {} product record(s), by pseudonym only",
            st.records.get("ads").copied().unwrap_or(0),
            st.records.get("product").copied().unwrap_or(0)
        );
        Ok(())
    }

    pub(super) fn say(&mut self, what: &str) {
        self.step += 1;
        println!("\n[{}] {what}", self.step);
    }

    pub(super) async fn register(
        &self,
        phone: &str,
        region: Option<&str>,
        accept: Option<AcceptChoice>,
    ) -> CliResult<Client> {
        Ok(self.register_full(phone, region, accept).await?.0)
    }

    /// Registers a device; its messenger client and key-service token.
    async fn register_full(
        &self,
        phone: &str,
        region: Option<&str>,
        accept: Option<AcceptChoice>,
    ) -> CliResult<(Client, Option<String>)> {
        let r = self.registered(phone, region, accept).await?;
        Ok((Client::new(&self.base).with_token(r.token), r.keyd_token))
    }

    /// Registers a device with the dev verifier's code, accepting the
    /// policy in force with `accept` (default: as the screen is shown).
    async fn registered(
        &self,
        phone: &str,
        region: Option<&str>,
        accept: Option<AcceptChoice>,
    ) -> CliResult<accord_client::wire::Registered> {
        let c = Client::new(&self.base);
        let s = c.start_registration(phone, region).await?;
        let code = s
            .dev_code
            .ok_or_else(|| CliError::Internal(anyhow::anyhow!("dev verifier returned no code")))?;
        let policy = c.current_policy().await?;
        let accept = accept.unwrap_or_default();
        Ok(c.verify_registration(
            s.registration_id,
            &code,
            &device("Pixel 8"),
            policy.as_ref().map(|p| (p.version, &accept)),
        )
        .await?)
    }

    /// Registers a device (accepting the policy in force) and sets up its
    /// end-to-end state in `dir`, its keys published.
    async fn e2e_user(
        &self,
        phone: &str,
        dir: &std::path::Path,
    ) -> CliResult<(Client, accord_client::messaging::Device)> {
        use accord_client::messaging::{Device, KeySource};
        let r = self.registered(phone, None, None).await?;
        let client = Client::new(&self.base).with_token(r.token);
        let mut dev = Device::open_or_create(
            &dir.join(format!("{}.e2e.json", r.device_id)),
            &KeySource::KeyFile(dir.join(format!("{}.e2e.key", r.device_id))),
            r.account_id,
            r.device_id,
        )
        .map_err(super::msg::cli_error)?;
        dev.setup(&client).await.map_err(super::msg::cli_error)?;
        Ok((client, dev))
    }

    async fn advance_to(&self, day: i64, t0: Timestamp) -> CliResult<Timestamp> {
        let now = self.admin.clock().await?.now;
        let target = t0.plus_days(day);
        let ms = target.0 - now.0;
        // Whole seconds, rounded up, so that "day N" is never a moment early.
        let v = self
            .admin
            .advance_clock(0, 0, (ms.max(0) + 999) / 1000)
            .await?;
        println!("    … clock is now day {day} ({})", v.now_rfc3339);
        Ok(v.now)
    }
}

pub async fn run(a: DemoArgs) -> CliResult {
    let dir = a.data_dir.join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| CliError::Input(format!("cannot reset {}: {e}", dir.display())))?;
    }
    let admin_token = BearerToken::generate();
    let clock = SimulatedClock::following_wall_clock();
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let data = DataArgs {
        data_dir: dir.clone(),
        database_url: None,
    };
    let (stopper, stop) = accord_http::stop_signal();
    let internal = |e: std::io::Error| CliError::Internal(e.into());

    // The key service, on its own port, as in `accord serve`.
    let keyd = accord_keyd::Application::build(accord_keyd::Settings {
        location: data.location(),
        key_dir: dir.clone(),
        master: None,
        admin_token: TokenHash::of(admin_token.reveal()),
        clock: clock_dyn.clone(),
        config: accord_keyd::KeydConfig::default(),
    })
    .await
    .map_err(|e| CliError::Internal(e.into()))?;
    let keyd_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(internal)?;
    let keyd_addr = keyd_listener.local_addr().map_err(internal)?;
    let mut tasks = keyd.start(keyd_listener, &stop);
    let keys = in_process_keys(keyd.service(), format!("http://{keyd_addr}")).await?;

    // The consent log's signing key, outside the database; the partner
    // checks the feed's checkpoints and citations with its public half.
    let log_key_file = SignerSource::File(dir.join("messenger.log.key"));
    let log_key = log_key_file
        .load()
        .map_err(|e| CliError::Internal(e.into()))?
        .public();
    // The partner, on its own port and database, fed by the messenger.
    let feed_secret = BearerToken::generate().reveal().as_bytes().to_vec();
    // The partner forwards its users' blinded elements to the key service
    // under its own client, as in `accord serve`.
    let partner_client = keyd
        .service()
        .client_named("partner", accord_keyd::ClientKind::Partner)
        .await
        .map_err(|e| CliError::Internal(e.into()))?;
    let partner = accord_partner::Application::build(accord_partner::Settings {
        messenger_log_key: Some(log_key),
        oprf: Some(Arc::new(accord_keyd::InProcessOprf::new(
            keyd.service().clone(),
            partner_client,
        ))),
        ..accord_partner::Settings::new(
            data.location(),
            TokenHash::of(admin_token.reveal()),
            clock_dyn.clone(),
            feed_secret.clone(),
        )
    })
    .await?;
    let partner_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(internal)?;
    let partner_addr = partner_listener.local_addr().map_err(internal)?;
    tasks.extend(partner.start(partner_listener, &stop));

    // The messenger: the server only; the story drives the feed itself.
    let messenger = accord_messenger::Application::build(accord_messenger::Settings {
        simulated_clock: Some(clock.clone()),
        keys: Some(keys),
        feed: Some(accord_messenger::feed::FeedConfig::new(
            format!("http://{partner_addr}"),
            feed_secret,
        )),
        log_key: log_key_file,
        // Every person in the story registers from this one address.
        config: accord_messenger::MessengerConfig {
            codes_per_client_per_hour: 100,
            ..accord_messenger::MessengerConfig::default()
        },
        ..accord_messenger::Settings::new(
            dir.display().to_string(),
            TokenHash::of(admin_token.reveal()),
            Arc::new(DevVerifier),
            clock_dyn,
        )
    })
    .await
    .map_err(|e| CliError::Internal(e.into()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(internal)?;
    let addr = listener.local_addr().map_err(internal)?;
    let feed = messenger
        .dispatcher()
        .cloned()
        .ok_or_else(|| CliError::Internal(anyhow::anyhow!("no feed dispatcher")))?;
    tasks.push(accord_http::spawn_server(
        listener,
        messenger.router(),
        stop.clone(),
    ));
    let base = format!("http://{addr}");
    println!(
        "Accord demo: messenger on {base}, key service on http://{keyd_addr}, partner on http://{partner_addr};\nSQLite in {}; simulated clock.",
        dir.display()
    );
    let mut d = Demo {
        base: base.clone(),
        admin: Client::new(&base).with_token(admin_token.reveal()),
        step: 0,
        feed,
        partner: partner.service().clone(),
        partner_url: format!("http://{partner_addr}"),
        keyd: keyd.service().clone(),
        keyd_url: format!("http://{keyd_addr}"),
        store: messenger.store().clone(),
        log_key,
    };
    let result = story(&mut d).await;
    stopper.stop();
    for t in tasks {
        let _ = t.await;
    }
    result?;
    println!(
        "\nDone. Inspect the database with: accord ledger verify --data-dir {}",
        dir.display()
    );
    Ok(())
}

async fn story(d: &mut Demo) -> CliResult {
    d.say("Carol registers before any policy exists (0812-3456-7890, region ID).");
    let carol = d.register("0812-3456-7890", Some("ID"), None).await?;
    println!(
        "    carol's number normalises to +6281234567890; she shares {}",
        shared(&carol.consent().await?)
    );

    d.say("The operator publishes policy v1 under the whatsapp-2016 profile (pre-ticked sharing box, 30-day opt-out).");
    let v1 = d
        .admin
        .publish_policy("We will share your phone number and device information with our partner for friend suggestions and ads.", &Purpose::ALL, Some("whatsapp-2016"))
        .await?;
    let t0 = v1.published_at;
    println!(
        "    version {} sha256 {}… accept by {}",
        v1.version,
        &v1.text_sha256[..16],
        v1.accept_by.to_rfc3339()
    );

    d.say("Alice registers and leaves the box ticked; Bob registers and unticks it.");
    let alice = d.register("+62 812 3456 7891", None, None).await?;
    let bob = d
        .register(
            "+62 812 3456 7892",
            None,
            Some(AcceptChoice {
                share: Some(false),
                grants: vec![],
            }),
        )
        .await?;
    let alice_id = alice.consent().await?.account_id;
    println!(
        "    alice shares {}; bob shares {}",
        shared(&alice.consent().await?),
        shared(&bob.consent().await?)
    );
    d.feed().await?;

    d.advance_to(29, t0).await?;
    d.say("Day 29: Alice opts out, inside her 30-day window.");
    println!(
        "    alice now shares {}",
        shared(&alice.withdraw(Purpose::Ads).await?)
    );
    d.feed().await?;
    println!("    carol has not accepted yet and still uses the messenger: GET /v1/me -> ok ({} devices)", carol.me().await?["devices"]);

    d.advance_to(30, t0).await?;
    d.say("Day 30: the deadline passed; Carol has not accepted.");
    match carol.me().await {
        Err(e) => println!("    GET /v1/me -> {e}"),
        Ok(_) => {
            return Err(CliError::Internal(anyhow::anyhow!(
                "carol should be restricted"
            )))
        }
    }
    let export = carol.export().await?;
    println!(
        "    she can still export her data ({} ledger entries) and accept:",
        export["ledger"].as_array().map_or(0, |l| l.len())
    );
    let v = carol
        .accept_policy(v1.version, &AcceptChoice::default())
        .await?;
    println!(
        "    carol accepted with the box left ticked; she shares {}",
        shared(&v)
    );
    d.feed().await?;

    d.advance_to(61, t0).await?;
    d.say("Day 61: Carol tries to opt out, 31 days after accepting.");
    match carol.withdraw(Purpose::Product).await {
        Err(e) => println!("    -> {e}"),
        Ok(_) => {
            return Err(CliError::Internal(anyhow::anyhow!(
                "the window should be closed"
            )))
        }
    }

    d.say("The operator publishes policy v2 under the strict profile: separate purposes, off unless granted.");
    let v2 = d
        .admin
        .publish_policy(
            "Version 2: you choose each purpose separately, and can change your mind any time.",
            &Purpose::ALL,
            Some("strict"),
        )
        .await?;
    println!(
        "    carol's v1 consent stays in force until {} unless she accepts v2",
        v2.accept_by.to_rfc3339()
    );
    let v = carol
        .accept_policy(
            v2.version,
            &AcceptChoice {
                share: None,
                grants: vec![Purpose::Product],
            },
        )
        .await?;
    println!(
        "    carol accepts v2 granting only product: she shares {} (nothing inherited from v1)",
        shared(&v)
    );
    let v = carol.withdraw(Purpose::Product).await?;
    println!(
        "    and withdraws it again at once: she shares {}",
        shared(&v)
    );
    d.feed().await?;

    d.say("Consent at past instants, rebuilt from the ledger alone.");
    for day in [10, 28, 30] {
        let at = t0.plus_days(day);
        let v = d.admin.admin_consent_at(alice_id, at).await?;
        println!("    alice on day {day}: shares {}", shared(&v));
    }

    d.say("Carol's consent receipt (Kantara Consent Receipt shape):");
    let r = carol.receipt().await?;
    println!(
        "    policy v{} sha256 {}…, services: {}",
        r["policyVersion"],
        &r["policySha256"].as_str().unwrap_or("")[..16],
        r["services"][0]["purposes"]
            .as_array()
            .map_or(0, |p| p.len())
    );
    for p in r["services"][0]["purposes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "      {}: {}",
            p["purpose"].as_str().unwrap_or("?"),
            p["consentType"].as_str().unwrap_or("?")
        );
    }

    let receipt: accord_domain::receipt::ConsentReceipt = serde_json::from_value(r)
        .map_err(|e| CliError::Internal(anyhow::anyhow!("the receipt: {e}")))?;
    match receipt.verify(&d.log_key) {
        Ok(c) => println!(
            "    verified offline against the messenger's log key: {} of her ledger entries proven against {} signed checkpoint(s)",
            c.entries, c.checkpoints
        ),
        Err(e) => return Err(CliError::Tampered(format!("carol's receipt: {e}"))),
    }

    d.say("Bob deletes his account; the ledger keeps the record.");
    bob.delete_account().await?;
    match bob.consent().await {
        Err(e) => println!("    bob's token now -> {e}"),
        Ok(_) => {
            return Err(CliError::Internal(anyhow::anyhow!(
                "bob's token should be dead"
            )))
        }
    }

    d.say("Dave discovers which of his contacts use the messenger, privately.");
    let (dave, dave_keyd) = d.register_full("+49 30 901820", None, None).await?;
    let contacts = [
        "0812-3456-7891",
        "0812-3456-7892",
        "0812 3456 7899",
        "+49 30 901820",
        "+44 20 7946 0958",
    ];
    let numbers: Vec<PhoneNumber> = contacts
        .iter()
        .map(|c| PhoneNumber::parse(c, Some("ID")))
        .collect::<Result<_, _>>()
        .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
    let found = accord_client::discovery::discover(&dave, dave_keyd.as_deref(), &numbers)
        .await
        .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
    for (c, f) in contacts.iter().zip(&found) {
        println!(
            "    {c:<18} {}",
            if *f { "uses the messenger" } else { "-" }
        );
    }
    println!("    (numbers were blinded before the key service saw them; the messenger saw only 16-bit bucket prefixes;");
    println!("     bob deleted his account, so his number is no longer found)");

    d.say("Erin and Frank message each other and compare safety numbers (key transparency).");
    let e2e_dir = tempfile::tempdir().map_err(|e| CliError::Internal(e.into()))?;
    let (erin_c, mut erin) = d.e2e_user("+62 812 3456 7893", e2e_dir.path()).await?;
    let (frank_c, mut frank) = d.e2e_user("+62 812 3456 7894", e2e_dir.path()).await?;
    let to_frank = accord_client::messaging::Recipient::Account(frank.account_id());
    let sent = erin
        .send_text(&erin_c, &to_frank, "hi Frank")
        .await
        .map_err(super::msg::cli_error)?;
    println!(
        "    erin sent to {} device(s) of frank, each checked against the key directory's lookup proof",
        sent.devices
    );
    let on_erin = erin
        .safety_number(&erin_c, frank.account_id())
        .await
        .map_err(super::msg::cli_error)?;
    let on_frank = frank
        .safety_number(&frank_c, erin.account_id())
        .await
        .map_err(super::msg::cli_error)?;
    println!("    erin's screen:  {}", on_erin.number);
    println!("    frank's screen: {}", on_frank.number);
    if on_erin.number != on_frank.number {
        return Err(CliError::Internal(anyhow::anyhow!(
            "the two safety numbers differ"
        )));
    }
    erin.mark_verified(&on_erin)
        .map_err(super::msg::cli_error)?;
    println!("    they match: erin marks frank verified (a change of his keys would now block her sends until she accepts it)");
    for (who, c, dev) in [
        ("erin", &erin_c, &mut erin),
        ("frank", &frank_c, &mut frank),
    ] {
        let a = dev.audit_own(c).await.map_err(super::msg::cli_error)?;
        println!(
            "    {who}'s own audit: {} device(s) in the directory, {} warning(s)",
            a.devices,
            a.warnings.len()
        );
    }

    d.say("An outside auditor checks the key directory's history (accord audit keys).");
    let mut auditor = accord_client::kt::Auditor::open(&e2e_dir.path().join("kt-audit.json"))
        .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
    let r = auditor
        .run(&Client::new(&d.base))
        .await
        .map_err(|e| CliError::Tampered(e.to_string()))?;
    println!(
        "    audit passed: {} signed root(s) checked, append-only proofs {}",
        r.roots_checked,
        match r.proven {
            Some((from, to)) => format!("from epoch {from} to {to}"),
            None => "not needed (one epoch)".into(),
        }
    );

    business_story(d, e2e_dir.path()).await?;
    super::demo_audience::audience_story(d, e2e_dir.path()).await?;

    d.say(
        "The operator verifies the ledger against the checkpoints the partner kept from the feed.",
    );
    let held = d
        .partner
        .checkpoints()
        .await
        .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
    let report = accord_messenger::service::verify_ledger(&*d.store, &held, Some(&d.log_key))
        .await
        .map_err(|e| CliError::Tampered(e.to_string()))?;
    println!(
        "    consistent: {} entries, {} of the partner's signed checkpoints agree with the log",
        report.entries, report.checkpoints_checked
    );

    d.say("The operator verifies the ledger's hash chain.");
    let r = d.admin.verify_ledger().await?;
    println!(
        "    intact: {} entries in {} shards",
        r.entries,
        r.shards.iter().filter(|s| s.entries > 0).count()
    );
    Ok(())
}

/// The business chapter: receipts and deliveries arrive; one business's
/// marketing is muted by some users and blocked by others, its quality
/// drops, and its marketing is paused while its receipts keep flowing.
async fn business_story(d: &mut Demo, dir: &std::path::Path) -> CliResult {
    use accord_client::messaging::{BusinessDevice, Event, ListenOptions, Plaintext, Recipient};
    use accord_domain::business::Category;
    use accord_e2e::{BusinessMeta, ClientMessageId, TemplateRef};
    use reqwest::Method;
    use serde_json::json;
    let e = super::msg::cli_error;

    d.say(
        "Toko Sinar registers as a business; the operator approves its templates and verifies it.",
    );
    let (shop_c, shop) = d.e2e_user("+62 812 3456 7900", dir).await?;
    let key: accord_messenger_wire::ApiKeyCreated = shop_c
        .request(
            Method::POST,
            "/v1/business",
            Some(&json!({ "display_name": "Toko Sinar" })),
        )
        .await?;
    let api = Client::new(&d.base).with_token(&key.api_key);
    let mut versions = Vec::new();
    for (name, category, body) in [
        (
            "order_receipt",
            "utility",
            "Order {{1}} is paid: {{2}}. Thank you!",
        ),
        ("delivery_update", "utility", "Parcel {{1}} is {{2}}."),
        (
            "promo",
            "marketing",
            "This week only: {{1}} off everything.",
        ),
    ] {
        let t: accord_messenger_wire::TemplateView = api
            .request(
                Method::POST,
                "/v1/business/templates",
                Some(&json!({"name": name, "language": "en", "category": category, "body": body})),
            )
            .await?;
        let _: accord_messenger_wire::TemplateView = d
            .admin
            .request(
                Method::POST,
                &format!("/v1/admin/templates/{}/review", t.id),
                Some(&json!({ "decision": "approve" })),
            )
            .await?;
        println!("    {name} ({category}) version {}: approved", t.version);
        versions.push((name, category, t.version));
    }
    d.admin
        .request_raw(
            Method::PUT,
            &format!("/v1/admin/businesses/{}/verified", key.business),
            Some(&json!({ "value": true })),
        )
        .await?;
    println!("    the business's device is an E2E device like any other; its agent holds the keys");
    let agent = BusinessDevice::open(shop, shop_c.clone(), api.clone())
        .await
        .map_err(e)?;
    let meta = |name: &str| {
        let (n, c, v) = versions
            .iter()
            .find(|(n, _, _)| *n == name)
            .copied()
            .unwrap_or(("", "utility", 0));
        BusinessMeta {
            category: Category::parse(c).unwrap_or(Category::Utility),
            template: Some(TemplateRef {
                name: n.into(),
                language: "en".into(),
                version: v,
            }),
        }
    };
    let template = |params: &[&str]| Plaintext {
        client_message_id: ClientMessageId::random(),
        sent_at: Timestamp(0),
        kind: accord_e2e::PlaintextKind::Template {
            params: params.iter().map(|p| (*p).to_owned()).collect(),
        },
    };

    d.say("Eight customers opt in to Toko Sinar; six of them to its marketing too. Receipts and deliveries arrive.");
    let mut customers = Vec::new();
    for i in 0..8 {
        let (c, dev) = d
            .e2e_user(&format!("+62 812 3456 79{:02}", 10 + i), dir)
            .await?;
        let body = if i < 6 {
            json!({ "opted_in": true, "marketing": true })
        } else {
            json!({ "opted_in": true })
        };
        let _: serde_json::Value = c
            .request(
                Method::PUT,
                &format!("/v1/me/businesses/{}", key.business),
                Some(&body),
            )
            .await?;
        customers.push((c, dev));
    }
    for (i, (_, dev)) in customers.iter().enumerate() {
        let to = Recipient::Account(dev.account_id());
        let order = format!("A-{}", 100 + i);
        agent
            .send(
                &to,
                &meta("order_receipt"),
                &template(&[&order, "Rp 125.000"]),
            )
            .await
            .map_err(e)?;
        agent
            .send(
                &to,
                &meta("delivery_update"),
                &template(&[&format!("JX-{i}"), "out for delivery"]),
            )
            .await
            .map_err(e)?;
    }
    /// Receives `n` business messages on `dev` and renders them.
    async fn inbox(
        c: &Client,
        dev: &mut accord_client::messaging::Device,
        n: usize,
    ) -> CliResult<Vec<(u64, String)>> {
        let mut got = Vec::new();
        let opts = ListenOptions {
            timeout: Some(std::time::Duration::from_secs(10)),
            ..ListenOptions::default()
        };
        dev.listen(c, opts, |ev| {
            if let Event::Message {
                envelope_id,
                from,
                plaintext,
                business: Some(meta),
                ..
            } = ev
            {
                got.push((envelope_id, from.account, meta, plaintext));
            }
            if got.len() >= n {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await
        .map_err(super::msg::cli_error)?;
        let mut out = Vec::new();
        for (id, from, meta, p) in got {
            let m = dev
                .render_business(c, from, &meta, &p)
                .await
                .map_err(super::msg::cli_error)?;
            out.push((id.0, m.line()));
        }
        Ok(out)
    }
    for (i, (c, dev)) in customers.iter_mut().enumerate() {
        let lines = inbox(c, dev, 2).await?;
        if i == 0 {
            for (_, l) in &lines {
                println!("    customer 1 sees: {l}");
            }
        }
    }
    println!("    (the messenger relayed ciphertext; it saw template names and categories, never the order numbers)");

    d.say("Toko Sinar sends a promotion: two customers mute its marketing, two block it, one reports the message.");
    let mut reported = 0;
    for (i, (c, dev)) in customers.iter_mut().enumerate().take(6) {
        agent
            .send(
                &Recipient::Account(dev.account_id()),
                &meta("promo"),
                &template(&["30%"]),
            )
            .await
            .map_err(e)?;
        let lines = inbox(c, dev, 1).await?;
        if i == 0 {
            println!("    customer 1 sees: {}", lines[0].1);
        }
        let change = match i {
            0 | 1 => Some(json!({ "mute": ["marketing"] })),
            2 | 3 => Some(json!({ "blocked": true })),
            _ => None,
        };
        if let Some(body) = change {
            let _: serde_json::Value = c
                .request(
                    Method::PUT,
                    &format!("/v1/me/businesses/{}", key.business),
                    Some(&body),
                )
                .await?;
        }
        if i == 4 {
            c.request_raw(
                Method::POST,
                "/v1/reports",
                Some(&json!({ "envelope_id": lines[0].0 })),
            )
            .await?;
            reported += 1;
        }
    }
    for (i, (_, dev)) in customers.iter().enumerate().take(4) {
        let r = agent
            .send(
                &Recipient::Account(dev.account_id()),
                &meta("promo"),
                &template(&["40%"]),
            )
            .await;
        let code = match r {
            Err(accord_client::messaging::MessagingError::Client(c)) => {
                c.code().unwrap_or("?").to_owned()
            }
            other => format!("{other:?}"),
        };
        println!(
            "    the next promotion to customer {}: refused, {code} (Toko Sinar sees it as failed)",
            i + 1
        );
    }
    println!("    {reported} report(s) and 2 block(s) count against its quality");

    d.say("Its quality turns red: marketing is paused, receipts keep flowing.");
    let s: accord_messenger_wire::BusinessStatus = api
        .request(Method::GET, "/v1/business/status", None)
        .await?;
    println!("    quality {}: {}", s.quality.as_str(), s.quality_reason);
    let (_, dev) = &customers[5];
    let to = Recipient::Account(dev.account_id());
    match agent.send(&to, &meta("promo"), &template(&["50%"])).await {
        Err(accord_client::messaging::MessagingError::Client(c)) => {
            println!(
                "    a promotion to a customer who still wants them: refused, {}",
                c.code().unwrap_or("?")
            )
        }
        other => println!("    a promotion after red quality: {other:?}"),
    }
    agent
        .send(
            &to,
            &meta("order_receipt"),
            &template(&["A-200", "Rp 80.000"]),
        )
        .await
        .map_err(e)?;
    println!("    an order receipt to the same customer: sent");
    agent.flush().map_err(e)?;
    Ok(())
}
