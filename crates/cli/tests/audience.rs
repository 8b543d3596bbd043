//! Custom audiences as a business, its customers and the operator run
//! them, one process per command against the real `accord serve --dev`
//! (messenger, key service and partner on ephemeral loopback ports):
//! messenger users consent under both profiles (the pre-ticked box of
//! whatsapp-2016 and the explicit grant of strict), partner users with
//! their own ad setting and an email, a customer list uploaded through
//! the key service, matched by phone and by email with one member a row,
//! a noised size, a campaign whose ad reaches exactly the consenting
//! members, and a withdrawal at the messenger that removes a member.
//! The partner's database is read directly to check what it stores.

mod common;

use common::{accord, Server};
use std::path::Path;

fn ok(args: &[&str]) -> String {
    let (code, out, err) = accord(args);
    assert_eq!(code, 0, "accord {args:?}\n{out}\n{err}");
    out
}

/// The `name: value` line of `out`.
fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

fn partner_count(data: &Path, table: &str) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", data.join("partner.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
}

/// Polls until the partner holds `n` `ads` records (the feed runs every second).
fn wait_for_ads_records(data: &Path, n: i64) {
    for _ in 0..100 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let held = rt.block_on(async {
            use sqlx::Connection;
            let url = format!("sqlite://{}", data.join("partner.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM records WHERE purpose = 'ads'")
                .fetch_one(&mut c)
                .await
                .unwrap()
        });
        if held == n {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the partner never held {n} ads records");
}

#[test]
fn a_list_matches_consenting_people_once_and_a_withdrawal_removes_them() {
    let server = Server::start_with(&["--simulated-clock"]);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let data = server.data.path().to_owned();
    let data_s = data.to_str().unwrap().to_owned();
    let (partner, keyd, admin) = (
        server.url_of("partner"),
        server.url_of("key service"),
        server.admin_token(),
    );
    let publish = |profile: &str| {
        std::fs::write(
            p("policy.txt"),
            format!("Sharing with our partner ({profile})."),
        )
        .unwrap();
        ok(&[
            "admin",
            "publish-policy",
            "--data-dir",
            &data_s,
            "--server",
            &server.url,
            "--text-file",
            &p("policy.txt"),
            "--purpose",
            "ads",
            "--purpose",
            "product",
            "--profile",
            profile,
        ]);
    };
    let register = |name: &str, phone: &str, extra: &[&str]| {
        let session = p(&format!("{name}.json"));
        let mut args = vec![
            "register",
            "--phone",
            phone,
            "--server",
            &server.url,
            "--session",
            &session,
        ];
        args.extend_from_slice(extra);
        ok(&args);
        session
    };
    // whatsapp-2016: the box is pre-ticked. Alice leaves it, Bob unticks it.
    publish("whatsapp-2016");
    let alice = register("alice", "+6281234567890", &[]);
    register("bob", "+6281234567891", &["--no-share"]);
    // strict: nothing is shared without a grant. Carol grants ads, Dave nothing.
    publish("strict");
    register("carol", "+6281234567893", &["--grant", "ads"]);
    register("dave", "+6281234567894", &[]);
    wait_for_ads_records(&data, 2);
    // Partner users: Erin (not on the messenger) allows ads and gives her
    // email; Frank does not allow ads. Alice and Bob sign up too.
    let signup = |name: &str, phone: &str| {
        let s = p(&format!("p-{name}.json"));
        ok(&[
            "partner",
            "signup",
            "--name",
            name,
            "--phone",
            phone,
            "--server",
            &partner,
            "--partner-session",
            &s,
        ]);
        s
    };
    let p_alice = signup("alice", "+6281234567890");
    let p_bob = signup("bob", "+6281234567891");
    let p_erin = signup("erin", "+6281234567899");
    let p_frank = signup("frank", "+6281234567895");
    ok(&["partner", "ads", "--on", "--partner-session", &p_erin]);
    ok(&[
        "partner",
        "email",
        "--email",
        " Erin@Example.com ",
        "--partner-session",
        &p_erin,
    ]);
    ok(&[
        "partner",
        "email",
        "--email",
        "frank@example.com",
        "--partner-session",
        &p_frank,
    ]);

    // The operator sets the business up; the business creates an audience.
    let out = ok(&[
        "audience",
        "advertiser",
        "--name",
        "Warung Kopi",
        "--partner",
        &partner,
        "--keyd",
        &keyd,
        "--admin-token",
        &admin,
    ]);
    let (token, keyd_token) = (
        field(&out, "token").to_owned(),
        field(&out, "keyd_token").to_owned(),
    );
    let biz = |args: &[&str]| -> (i32, String, String) {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(&["--partner", &partner, "--token", &token]);
        accord(&a)
    };
    let (code, _, err) = biz(&["audience", "create", "--audience", "loyal customers"]);
    assert_eq!(code, 0, "{err}");

    std::fs::write(
        p("customers.csv"),
        "phone,email,fn,ln,country,loyalty\n\
         0812-3456-7890,,Alice,A,ID,gold\n\
         +62 812 3456 7891,,Bob,B,,silver\n\
         ,ERIN@example.com,Erin,E,,gold\n\
         +6281234567893,carol@elsewhere.example,Carol,C,,\n\
         +6281234567894,,Dave,D,,\n\
         +6281234567895,frank@example.com,Frank,F,,\n\
         not a number,also not an email,X,Y,,\n\
         +6281234567890,alice@example.com,Alice,again,,\n",
    )
    .unwrap();
    let upload = |file: &str, audience: &str, keyd_token: &str| {
        biz(&[
            "audience",
            "upload",
            "--audience",
            audience,
            "--file",
            file,
            "--region",
            "ID",
            "--keyd",
            &keyd,
            "--keyd-token",
            keyd_token,
            "--quiet",
        ])
    };
    let (code, out, err) = upload(&p("customers.csv"), "loyal customers", &keyd_token);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(field(&out, "rows"), "8");
    assert_eq!(field(&out, "rejected"), "1");
    assert_eq!(field(&out, "uploaded_rows"), "7");
    assert!(out.contains("loyal customers: fewer than 100"), "{out}");
    assert!(err.contains("column \"loyalty\" is not used"), "{err}");
    // Alice (pre-ticked, twice in the list), Carol (granted), Erin (by
    // email): three people. Not Bob, Dave (no consent) or Frank (ads off).
    assert_eq!(partner_count(&data, "audience_members"), 3);
    assert_eq!(
        partner_count(&data, "audience_candidates"),
        0,
        "nothing staged is left after matching"
    );
    assert_eq!(
        partner_count(&data, "audience_uploads WHERE matched_at IS NULL"),
        0
    );
    let rejects = std::fs::read_to_string(p("customers.csv.rejects.csv")).unwrap();
    assert!(rejects.starts_with("line,reason\n8,"), "{rejects}");
    assert!(
        !rejects.contains("not a number"),
        "rejects hold reasons, never content"
    );

    // A campaign reaches the consenting members, and no one else.
    let (code, out, err) = biz(&[
        "audience",
        "campaign",
        "--audience",
        "loyal customers",
        "--title",
        "Kopi susu",
        "--text",
        "Two for one this week",
        "--link",
        "https://warung.example/promo",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let ads = |s: &str| ok(&["partner", "show-ads", "--partner-session", s]);
    assert!(ads(&p_alice).contains("ad: Kopi susu | Two for one this week"));
    assert!(ads(&p_erin).contains("ad: Kopi susu"));
    assert!(ads(&p_bob).contains("no ads"));
    assert!(ads(&p_frank).contains("no ads"));
    let out = biz(&["audience", "report"]).1;
    assert!(
        out.contains("reach fewer than 100, impressions fewer than 100"),
        "{out}"
    );

    // Alice withdraws ads at the messenger: the feed removes her.
    ok(&["consent", "withdraw", "--session", &alice, "ads"]);
    wait_for_ads_records(&data, 1);
    assert_eq!(partner_count(&data, "audience_members"), 2);
    assert!(ads(&p_alice).contains("no ads"));

    // Bad input: exit 2 and a clear message, nothing uploaded.
    let (code, _, err) = upload(&p("customers.csv"), "no such audience", &keyd_token);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown_audience"), "{err}");
    std::fs::write(p("empty.csv"), "phone,email\n").unwrap();
    let (code, _, err) = upload(&p("empty.csv"), "loyal customers", &keyd_token);
    assert_eq!(code, 2, "{err}");
    std::fs::write(
        p("semicolons.csv"),
        "phone;email\n+6281234567890;a@b.example\n",
    )
    .unwrap();
    let (code, _, err) = upload(&p("semicolons.csv"), "loyal customers", &keyd_token);
    assert_eq!(code, 2, "{err}");
    let out = ok(&[
        "audience",
        "advertiser",
        "--name",
        "Tiny",
        "--partner",
        &partner,
        "--keyd",
        &keyd,
        "--keyd-quota",
        "3",
        "--admin-token",
        &admin,
    ]);
    let (tiny, tiny_keyd) = (
        field(&out, "token").to_owned(),
        field(&out, "keyd_token").to_owned(),
    );
    ok(&[
        "audience",
        "create",
        "--audience",
        "x",
        "--partner",
        &partner,
        "--token",
        &tiny,
    ]);
    let (code, _, err) = accord(&[
        "audience",
        "upload",
        "--audience",
        "x",
        "--file",
        &p("customers.csv"),
        "--region",
        "ID",
        "--keyd",
        &keyd,
        "--keyd-token",
        &tiny_keyd,
        "--partner",
        &partner,
        "--token",
        &tiny,
        "--quiet",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("quota"), "{err}");
    assert_eq!(
        partner_count(&data, "audience_uploads WHERE matched_at IS NULL"),
        0
    );
    // No raw identifier of the list reached the partner's database.
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap().path();
        if f.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("partner")
        {
            let bytes = std::fs::read(&f).unwrap();
            for needle in [
                "6281234567893",
                "carol@elsewhere",
                "frank@example.com",
                "erin@example",
            ] {
                let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                assert!(!found, "{needle} in {}", f.display());
            }
        }
    }
}
