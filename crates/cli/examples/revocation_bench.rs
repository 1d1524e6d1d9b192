//! Benchmark (not a test) of the revocation issue's targets, documented in
//! docs/performance.md:
//!
//! 1. CRL generation and signing with 100,000 revoked entries (target <= 1 s), for
//!    a P-256 and an RSA-2048 CA, alone and with the store query the server runs;
//! 2. `onlineca cert list --user U` on a store of 1,000,000 certificates (target
//!    <= 50 ms), as the store query alone and as the whole command (process start,
//!    configuration, store open, query, output).
//!
//! Run with `cargo build --release && cargo run --release --example revocation_bench`
//! (optionally `-- DIR` to keep the 1M-row database there and reuse it next time).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use onlineca_core::IssuingCa;
use onlineca_core::crl::{self, Revoked};
use onlineca_core::pki::{self, KeyType, PkiOptions};
use onlineca_store::{IssuedFilter, StatusFilter};
use sqlx::{Connection, SqliteConnection};
use time::OffsetDateTime;

const CERTS: u64 = 1_000_000;
const USERS: u64 = 10_000;
const REVOKED: u64 = 100_000;
/// A P-256 client certificate from this CA is about 600 bytes of DER.
const DER_BYTES: usize = 600;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A cheap deterministic mixer, so serials look random and never repeat.
fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn serial_hex(i: u64) -> String {
    // 20 bytes, top bit clear, unique through the counter in the low bytes.
    format!("{:016x}{:08x}{:016x}", mix(i) >> 1, mix(!i) as u32, i)
}

fn make_ca(key_type: KeyType, now: OffsetDateTime) -> IssuingCa {
    let created = pki::create(&PkiOptions {
        key_type,
        org: "Bench".into(),
        ca_name: "Bench CA".into(),
        hostnames: vec!["localhost".into()],
        root_lifetime: Duration::from_secs(10 * 365 * 86400),
        ca_lifetime: Duration::from_secs(365 * 86400),
        tls_lifetime: Duration::from_secs(86400),
        now,
    })
    .expect("create CA");
    IssuingCa::from_pem(
        &created.issuing.cert_pem,
        &created.issuing.key_pem,
        &created.root.cert_pem,
    )
    .expect("load CA")
}

fn bench_crl_alone(now: OffsetDateTime) {
    println!("== CRL generation + signing, {REVOKED} entries (target <= 1 s)");
    let entries: Vec<Revoked> = (0..REVOKED)
        .map(|i| Revoked {
            serial: hex::decode(serial_hex(i)).unwrap(),
            revoked_at: now - time::Duration::seconds(i as i64),
            reason: Some([0, 1, 3, 4, 5][(i % 5) as usize]),
        })
        .collect();
    for key_type in [KeyType::P256, KeyType::Rsa2048] {
        let ca = make_ca(key_type, now);
        let runs: Vec<Duration> = (0..7)
            .map(|n| {
                let t = Instant::now();
                let c =
                    crl::build(&ca, n + 1, now, now + time::Duration::hours(1), &entries).unwrap();
                let d = t.elapsed();
                assert_eq!(c.entries, REVOKED as usize);
                if n == 0 {
                    println!(
                        "   {key_type:?}: CRL is {} bytes DER, {} bytes PEM",
                        c.der.len(),
                        c.pem.len()
                    );
                }
                d
            })
            .collect();
        // Where the time goes: the signature alone over a TBS of the same size.
        let tbs = vec![0x30u8; 3_500_000];
        let t = Instant::now();
        ca.sign_wrapped(&tbs).unwrap();
        let sign = t.elapsed();
        println!(
            "   {key_type:?}: build + sign + PEM median {} (of 7); the signature alone over 3.5 MB: {}",
            ms(median(runs)),
            ms(sign)
        );
    }
}

/// Fills a SQLite store with `CERTS` rows: `USERS` users with 100 certificates each,
/// issued every 30 s over the past year, 12 h lifetimes; the newest `REVOKED` are
/// unexpired and revoked.
async fn fill(db: &Path, now: OffsetDateTime) {
    let url = format!("sqlite://{}", db.display());
    onlineca_store::open(&url)
        .await
        .expect("create store")
        .close()
        .await;
    let mut c = SqliteConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;".to_string(),
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let der: Vec<u8> = (0..DER_BYTES)
        .map(|i| (mix(i as u64) & 0xff) as u8)
        .collect();
    let now_s = now.unix_timestamp();
    let started = Instant::now();
    let mut tx = c.begin().await.unwrap();
    for i in 0..CERTS {
        let issued = now_s - (CERTS - i) as i64 * 30;
        let unexpired = i >= CERTS - REVOKED;
        let not_after = if unexpired {
            now_s + 86400
        } else {
            issued + 12 * 3600
        };
        sqlx::query(
            "INSERT INTO certificates (serial, username, subject, auth_method, retriever, \
             spki_sha256, not_before, not_after, issued_at, client_addr, der, revoked_at, \
             revocation_reason) VALUES (?, ?, ?, 'password', NULL, ?, ?, ?, ?, '192.0.2.1', ?, ?, ?)",
        )
        .bind(serial_hex(i))
        .bind(format!("user-{:05}", i % USERS))
        .bind(format!("/O=Bench/OU=Users/CN=user-{:05}", i % USERS))
        .bind(format!("{:064x}", i))
        .bind(issued - 300)
        .bind(not_after)
        .bind(issued)
        .bind(&der)
        .bind(unexpired.then_some(now_s - 3600))
        .bind(unexpired.then_some(1i32))
        .execute(&mut *tx)
        .await
        .unwrap();
        if i % 100_000 == 99_999 {
            tx.commit().await.unwrap();
            tx = c.begin().await.unwrap();
            eprintln!("   ... {} rows", i + 1);
        }
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    println!(
        "   filled {CERTS} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn bench_store(dir: &Path, now: OffsetDateTime) {
    let db = dir.join("bench.db");
    println!(
        "== Store of {CERTS} certificates ({USERS} users x 100), SQLite at {}",
        db.display()
    );
    if !db.exists() {
        fill(&db, now).await;
    } else {
        println!("   reusing the existing database");
    }
    let url = format!("sqlite://{}", db.display());
    let store = onlineca_store::open(&url).await.expect("open store");
    assert_eq!(store.count_issued().await.unwrap(), CERTS);

    let time_it = |f: IssuedFilter| {
        let store = store.clone();
        async move {
            let mut runs = Vec::new();
            let mut rows = 0;
            for _ in 0..21 {
                let t = Instant::now();
                rows = store.list_issued(&f).await.unwrap().len();
                runs.push(t.elapsed());
            }
            (median(runs), rows)
        }
    };
    let user = |u: u64| IssuedFilter {
        username: Some(format!("user-{u:05}")),
        ..Default::default()
    };
    let (d, rows) = time_it(user(4242)).await;
    println!(
        "   list_issued --user ({rows} rows):                 median {} (target <= 50 ms)",
        ms(d)
    );
    let (d, rows) = time_it(IssuedFilter {
        status: Some(StatusFilter::Valid(now)),
        ..user(4242)
    })
    .await;
    println!(
        "   list_issued --user --valid ({rows} rows):          median {}",
        ms(d)
    );
    for (name, status) in [
        ("--valid", StatusFilter::Valid(now)),
        ("--expired", StatusFilter::Expired(now)),
        ("--revoked", StatusFilter::Revoked),
    ] {
        let (d, rows) = time_it(IssuedFilter {
            status: Some(status),
            limit: Some(1000),
            ..Default::default()
        })
        .await;
        println!(
            "   list_issued {name:<10} --limit 1000 ({rows} rows): median {}",
            ms(d)
        );
    }
    let (d, rows) = time_it(IssuedFilter {
        limit: Some(1000),
        ..Default::default()
    })
    .await;
    println!(
        "   list_issued (all) --limit 1000 ({rows} rows):      median {}",
        ms(d)
    );

    // What the server's poll costs, and the whole CRL path it runs on a change.
    let mut runs = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        store.revocation_mark().await.unwrap();
        runs.push(t.elapsed());
    }
    println!(
        "   revocation_mark (the poll, {REVOKED} revoked):       median {}",
        ms(median(runs))
    );
    let ca = make_ca(KeyType::P256, now);
    let t = Instant::now();
    let rows = store.revoked_unexpired(now).await.unwrap();
    let query = t.elapsed();
    let t2 = Instant::now();
    let entries: Vec<Revoked> = rows
        .into_iter()
        .map(|r| Revoked {
            serial: hex::decode(&r.serial).unwrap(),
            revoked_at: r.revoked_at,
            reason: r.reason,
        })
        .collect();
    let number = store.next_crl_number().await.unwrap();
    let built = crl::build(&ca, number, now, now + time::Duration::hours(1), &entries).unwrap();
    println!(
        "   server CRL path, {} entries: store query {} + decode/number/build/sign {} = {}",
        built.entries,
        ms(query),
        ms(t2.elapsed()),
        ms(t.elapsed())
    );
    store.close().await;

    // The whole command, as an operator runs it.
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("onlineca")))
        .filter(|p| p.exists());
    let Some(exe) = exe else {
        println!("   (onlineca binary not built: run `cargo build --release` to time the command)");
        return;
    };
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = \"unused.pem\"\nkey = \"unused.key\"\n[ca]\ncert = \"unused.pem\"\nkey = \"unused.key\"\n[store]\nurl = \"sqlite://{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let mut runs = Vec::new();
    let mut lines = 0;
    for _ in 0..11 {
        let t = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(["cert", "list", "--user", "user-04242", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        runs.push(t.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        lines = out
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
    }
    println!(
        "   `onlineca cert list --user` ({} rows), whole process: median {} (target <= 50 ms)",
        lines - 1,
        ms(median(runs))
    );
}

#[tokio::main]
async fn main() {
    onlineca_server::tls::install_crypto_provider();
    let now = OffsetDateTime::now_utc();
    bench_crl_alone(now);
    let keep: Option<PathBuf> = std::env::args().nth(1).map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    bench_store(&dir, now).await;
}
