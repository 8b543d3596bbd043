//! The `accord` binary, run as a user runs it.

use std::process::Command;

fn accord(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_accord"))
        .args(args)
        .env_remove("ACCORD_DATABASE_URL")
        .output()
        .expect("accord runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn normalize_prints_e164_or_one_clear_error() {
    let (code, out, _) = accord(&["normalize", "phone", "--region", "ID", "0812-3456-7890"]);
    assert_eq!((code, out.trim()), (0, "+6281234567890"));
    let (code, out, _) = accord(&["normalize", "email", "  Alice@Example.ORG "]);
    assert_eq!((code, out.trim()), (0, "alice@example.org"));
    for bad in [
        vec!["normalize", "phone", "0812-3456-7890"],
        vec!["normalize", "phone", "--region", "ID", "12"],
        vec!["normalize", "phone", "--region", "ZZ", "0812-3456-7890"],
        vec!["normalize", "email", "not an email"],
    ] {
        let (code, out, err) = accord(&bad);
        assert_eq!(code, 2, "{bad:?}");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("812"), "errors never echo the number: {err}");
    }
    let (code, _, _) = accord(&["normalize", "phone"]);
    assert_eq!(code, 2, "usage errors exit 2");
}

#[test]
fn audience_check_reads_a_customer_list_as_an_upload_would() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("customers.csv");
    std::fs::write(
        &list,
        "phone,email,fn,ln,country,loyalty\n\
         0812-3456-7890,Ana@Example.com,Ana,Putri,ID,gold\n\
         (415) 555-0100,,Bo,,US,\n\
         12,not-an-email,Cy,,,\n",
    )
    .unwrap();
    let (code, out, err) = accord(&[
        "audience",
        "check",
        "--file",
        list.to_str().unwrap(),
        "--region",
        "ID",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "rows: 3\nvalid_phones: 2\nvalid_emails: 1\nrejected: 1\n"
    );
    assert!(err.contains("column \"loyalty\" is not used"), "{err}");
    assert!(
        !err.contains("Ana") && !out.contains("Ana"),
        "no content on the terminal"
    );
    let rejects = std::fs::read_to_string(dir.path().join("customers.csv.rejects.csv")).unwrap();
    assert_eq!(
        rejects,
        "line,reason\n4,\"phone: phone number is not a valid number for its region; email: email address is malformed\"\n"
    );
    // What cannot be read at all: one clear line, exit 2.
    for (body, says) in [
        (
            &b"phone;email\n+14155550100;a@b.co\n"[..],
            "semicolon-separated",
        ),
        (&b"phone,email\n"[..], "no customer rows"),
        (
            &b"name,city\nx,y\n"[..],
            "neither a `phone` nor an `email` column",
        ),
        (
            &b"phone,email\n+14155550100,a\xff@b.co\n"[..],
            "line 2 is not valid UTF-8",
        ),
        (&b""[..], "the file is empty"),
    ] {
        std::fs::write(&list, body).unwrap();
        let (code, _, err) = accord(&["audience", "check", "--file", list.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{says}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (code, _, err) = accord(&["audience", "check", "--file", "/nonexistent/list.csv"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot open"), "{err}");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["demo", "--help"],
        vec!["ledger", "verify", "--help"],
        vec!["admin", "publish-policy", "--help"],
        vec!["admin", "consent-at", "--help"],
        vec!["admin", "clock", "--help"],
        vec!["register", "--help"],
        vec!["policy", "accept", "--help"],
        vec!["consent", "withdraw", "--help"],
        vec!["account", "delete", "--help"],
    ] {
        let (code, out, _) = accord(&cmd);
        assert_eq!(code, 0, "{cmd:?}");
        assert!(out.contains("Usage:"), "{cmd:?}: {out}");
    }
}

#[test]
fn serve_refuses_to_start_without_a_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = accord(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--dev"), "{err}");
}

/// The demo walks the story; then one edited ledger row in the SQLite
/// file makes `accord ledger verify` fail and name that entry.
#[test]
fn demo_then_tampering_is_found_by_ledger_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (code, out, err) = accord(&["demo", "--data-dir", data]);
    assert_eq!(code, 0, "demo failed: {out}\n{err}");
    assert!(out.contains("opt_out_window_closed"), "{out}");
    assert!(out.contains("policy_acceptance_required"), "{out}");
    assert!(out.contains("intact:"), "{out}");
    assert!(out.contains("verified offline"), "{out}");
    assert!(
        out.contains("of the partner's signed checkpoints agree"),
        "{out}"
    );
    // The custom-audience chapter: a noised size, the ad to consenting
    // members only, and a withdrawal that removes one.
    assert!(
        out.contains("its audience's size only with noise: fewer than 100"),
        "{out}"
    );
    assert!(out.contains("the partner matched 2 people"), "{out}");
    assert!(
        out.contains("gita's feed: [\"Double points this week\"]"),
        "{out}"
    );
    assert!(out.contains("indra's feed: []"), "{out}");
    assert!(out.contains("the audience now holds 1 person"), "{out}");

    let demo = format!("{data}/demo");
    let (code, out, _) = accord(&["ledger", "verify", "--data-dir", &demo]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ledger intact: "), "{out}");

    // An auditor saved the signed checkpoints (here: every one the
    // messenger signed during the demo) before the attack.
    let db = format!("{demo}/messenger.db");
    let saved = format!("{data}/checkpoints.json");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (shard, size) = rt.block_on(async {
        let pool = sqlx_pool(&db).await;
        let rows: Vec<(i64, i64, String, i64, String)> =
            sqlx::query_as("SELECT shard, size, root, at, signature FROM ledger_checkpoints")
                .fetch_all(&pool)
                .await
                .unwrap();
        let cps: Vec<serde_json::Value> = rows
            .iter()
            .map(|(shard, size, root, at, signature)| {
                serde_json::json!({ "shard": shard, "size": size, "root": root, "at": at, "signature": signature })
            })
            .collect();
        std::fs::write(&saved, serde_json::to_vec(&cps).unwrap()).unwrap();
        // The largest checkpointed shard.
        let (shard, size, ..) = rows.iter().max_by_key(|r| r.1).unwrap().clone();
        pool.close().await;
        (shard, size)
    });
    let (code, out, err) = accord(&[
        "ledger",
        "verify",
        "--data-dir",
        &demo,
        "--checkpoint",
        &saved,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("consistent with"), "{out}");

    // Truncate that shard below its checkpoint and set its head to match.
    rt.block_on(async {
        let pool = sqlx_pool(&db).await;
        sqlx::query("DELETE FROM ledger WHERE shard = ? AND seq >= ?")
            .bind(shard)
            .bind(size)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE ledger_shards SET seq = ?, hash = (SELECT hash FROM ledger WHERE shard = ? AND seq = ?) WHERE shard = ?",
        )
        .bind(size - 1)
        .bind(shard)
        .bind(size - 1)
        .bind(shard)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    });
    // The chain alone cannot tell; the saved checkpoint can.
    let (code, out, _) = accord(&["ledger", "verify", "--data-dir", &demo]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = accord(&[
        "ledger",
        "verify",
        "--data-dir",
        &demo,
        "--checkpoint",
        &saved,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("TAMPERED")
            && err.contains("checkpoint")
            && err.contains(&format!("shard {shard}")),
        "{err}"
    );

    // Edit one entry's time directly in the file.
    let (edit_shard, seq) = rt.block_on(async {
        let pool = sqlx_pool(&db).await;
        let (shard, seq): (i64, i64) = sqlx::query_as(
            "SELECT shard, MAX(seq) FROM ledger GROUP BY shard ORDER BY 2 DESC LIMIT 1",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let n = sqlx::query("UPDATE ledger SET at = at + 1 WHERE shard = ? AND seq = ?")
            .bind(shard)
            .bind(seq - 1)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 1);
        pool.close().await;
        (shard, seq - 1)
    });
    let (code, _, err) = accord(&["ledger", "verify", "--data-dir", &demo]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("TAMPERED")
            && err.contains(&format!("#{seq}"))
            && err.contains(&format!("shard {edit_shard}")),
        "{err}"
    );

    // A missing directory is an input error, not a crash.
    let (code, _, err) = accord(&["ledger", "verify", "--data-dir", &format!("{data}/nope")]);
    assert_eq!(code, 2, "{err}");
}

async fn sqlx_pool(path: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .unwrap()
}
