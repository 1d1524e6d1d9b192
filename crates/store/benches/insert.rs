//! Criterion micro-benchmarks of one `Store::record_issued` (the durable record made
//! before every certificate is handed out), on both backends:
//!
//! - `insert/sqlite`: a SQLite file in a fresh temporary directory, opened with
//!   [`onlineca_store::open`] as the server opens it (WAL, `synchronous=FULL`: every
//!   insert is one real fsync, so the figure depends on the disk);
//! - `insert/postgres`: PostgreSQL at `ONLINECA_TEST_PG_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`, as the store's tests), in a schema of
//!   its own that is dropped afterwards. When PostgreSQL is unreachable this one is
//!   skipped, loudly.
//!
//! Each insert is one certificate record with a fresh serial and 600 bytes of DER (a
//! P-256 client certificate's size); building the record is outside the timed part.
//!
//! Run: `cargo bench -p onlineca-store --bench insert` (append e.g.
//! `-- --warm-up-time 1 --measurement-time 3` for a quick run, or `-- sqlite`).
//! `cargo test -p onlineca-store --benches` runs each once.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, criterion_group, criterion_main,
};
use onlineca_store::{IssuedCert, Store, open};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use time::OffsetDateTime;
use tokio::runtime::Runtime;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A certificate record with serial number `n`.
fn record(n: u64, issued_at: OffsetDateTime) -> IssuedCert {
    IssuedCert {
        serial: format!("{n:040x}"),
        username: "alice".into(),
        subject: "/O=Example/OU=Users/CN=alice".into(),
        auth_method: "password".into(),
        retriever: None,
        spki_sha256: "ab".repeat(32),
        not_before: issued_at - time::Duration::minutes(5),
        not_after: issued_at + time::Duration::hours(12),
        issued_at,
        client_addr: Some("127.0.0.1:51234".into()),
        der: vec![0x5a; 600],
        revoked_at: None,
        revocation_reason: None,
        account_id: Some("0".repeat(32)),
        parent_serial: None,
        issuer_key_id: None,
    }
}

/// Times `record_issued` into `store` as benchmark `name` of `group`.
fn bench_insert(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    store: &Arc<dyn Store>,
) {
    let now = OffsetDateTime::now_utc();
    let mut n = 0u64;
    group.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            || {
                n += 1;
                record(n, now)
            },
            |c| async move { store.record_issued(&c).await.unwrap() },
            BatchSize::SmallInput,
        )
    });
}

/// `url` with any password replaced, for messages.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.into(),
        },
        None => url.into(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let mut group = c.benchmark_group("insert");
    // An insert costs milliseconds (an fsync): a fixed number of inserts per sample.
    group.sampling_mode(SamplingMode::Flat);

    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("onlineca.db").display());
    let sqlite = rt.block_on(open(&url)).expect("open SQLite store");
    bench_insert(&mut group, &rt, "sqlite", &sqlite);
    rt.block_on(sqlite.close());

    let base = std::env::var("ONLINECA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let admin = rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&base)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    });
    match admin {
        Err(why) => onlineca_testkit::skip(
            &format!("PostgreSQL at {}", redacted(&base)),
            &why,
            "run it with a database test, or set ONLINECA_TEST_PG_URL",
        ),
        Ok(mut admin) => {
            let suffix =
                RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
            let schema = format!("onlineca_bench_{suffix:016x}");
            rt.block_on(
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut admin),
            )
            .expect("create schema");
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            // Drop the schema even if the benchmark panics.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let pg = rt.block_on(open(&url)).expect("open PostgreSQL store");
                bench_insert(&mut group, &rt, "postgres", &pg);
                rt.block_on(pg.close());
            }));
            rt.block_on(
                sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&mut admin),
            )
            .expect("drop schema");
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    }
    group.finish();
}

criterion_group!(insert, benches);
criterion_main!(insert);
