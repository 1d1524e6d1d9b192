//! Criterion micro-benchmarks of the password check (`PasswordCheck::check`), as a
//! request makes it, against a SQLite store in a temporary directory:
//!
//! - `credentials/cold`: the credential cache off, so every check is the store
//!   lookup plus one argon2id verification on the worker pool (the first login, or
//!   every login with `[auth] credential_cache = "0s"`);
//! - `credentials/cached`: the same credentials again within the cache's lifetime:
//!   the store lookup and one HMAC, no argon2;
//! - `credentials/unknown_user`: a name the store does not have (never cached: one
//!   dummy argon2 verification, like a wrong password).
//!
//! Run: `cargo bench -p onlineca-server --bench credentials` (append e.g.
//! `-- --warm-up-time 1 --measurement-time 3`). `cargo test -p onlineca-server
//! --benches` runs each once.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use onlineca_server::auth::{BasicCredentials, PasswordCheck};
use onlineca_server::config::AuthSection;
use onlineca_store::{Store, User};
use time::OffsetDateTime;
use tokio::runtime::Runtime;

fn creds(user: &str, password: &str) -> BasicCredentials {
    BasicCredentials {
        username: user.into(),
        password: password.into(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store: Arc<dyn Store> = rt.block_on(async {
        let store = onlineca_store::open(&url).await.unwrap();
        let now = OffsetDateTime::now_utc();
        store
            .add_user(
                &User::new(
                    "alice",
                    onlineca_core::password::hash("correct horse").unwrap(),
                    now,
                )
                .unwrap(),
            )
            .await
            .unwrap();
        store
    });
    // No lockout in the way of repeated failures, no cache.
    let cold = PasswordCheck::new(&AuthSection {
        credential_cache: Duration::ZERO,
        max_failures: u32::MAX,
        ..AuthSection::default()
    })
    .unwrap();
    let cached = PasswordCheck::new(&AuthSection::default()).unwrap();

    let mut group = c.benchmark_group("credentials");
    group.sample_size(20);
    group.bench_function("cold", |b| {
        b.to_async(&rt).iter(|| async {
            cold.check(
                store.as_ref(),
                creds("alice", "correct horse"),
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap()
        })
    });
    group.bench_function("unknown_user", |b| {
        b.to_async(&rt).iter(|| async {
            cold.check(
                store.as_ref(),
                creds("nobody", "guess"),
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap_err()
        })
    });
    group.sample_size(100);
    group.bench_function("cached", |b| {
        b.to_async(&rt).iter(|| async {
            cached
                .check(
                    store.as_ref(),
                    creds("alice", "correct horse"),
                    OffsetDateTime::now_utc(),
                )
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
