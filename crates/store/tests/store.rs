//! One behavioural suite run against real databases: SQLite in a temporary directory
//! and PostgreSQL (`ONLINECA_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each PostgreSQL test in a schema of its
//! own that is dropped afterwards. Without a reachable PostgreSQL the PostgreSQL tests
//! fail when `CI` is set and are skipped (loudly) otherwise.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use onlineca_store::{
    IssuedCert, IssuedFilter, RevocationMark, RevokeOutcome, SCHEMA_VERSION, StatusFilter, Store,
    StoreError, User, open,
};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use time::OffsetDateTime;
use time::macros::datetime;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database for one test: its URL and the means to poke at it directly.
struct Fixture {
    url: String,
    /// The SQLite file, for SQLite fixtures.
    path: Option<PathBuf>,
}

impl Fixture {
    async fn open(&self) -> Arc<dyn Store> {
        open(&self.url).await.expect("open store")
    }

    /// Runs SQL on a connection of its own, bypassing the store.
    async fn exec_raw(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        if self.path.is_some() {
            let mut c = SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }

    /// Runs a query returning one integer, bypassing the store.
    async fn query_i64(&self, sql: &'static str) -> i64 {
        if self.path.is_some() {
            let mut c = SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
    }
}

async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onlineca.db");
    test(Fixture {
        url: format!("sqlite://{}", path.display()),
        path: Some(path),
    })
    .await;
}

fn random_suffix() -> String {
    let r = RandomState::new().hash_one((
        std::process::id(),
        std::thread::current().id(),
        std::time::SystemTime::now(),
    ));
    format!("{r:016x}")
}

async fn with_pg<F, Fut>(test: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let base = std::env::var("ONLINECA_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
    let mut admin =
        match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&base)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return no_pg(&base, &e.to_string()),
            Err(_) => return no_pg(&base, "timed out"),
        };
    let schema = format!("onlineca_test_{}", random_suffix());
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    // Run the test as a task so that a panic still lets us drop the schema.
    let outcome = tokio::spawn(test(Fixture { url, path: None })).await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// `url` with any password replaced, for messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.into(),
    }
}

fn no_pg(url: &str, why: &str) {
    let url = redacted(url);
    onlineca_testkit::skip(
        "PostgreSQL",
        &format!("{url}: {why}"),
        "run PostgreSQL at 127.0.0.1:5432 with a database `test` (trust auth), \
         or set ONLINECA_TEST_PG_URL",
    );
}

fn user(name: &str) -> User {
    User::new(
        name,
        format!("$argon2id$v=19$m=19456,t=2,p=1$salt${name}"),
        datetime!(2026-01-02 03:04:05 UTC),
    )
    .unwrap()
}

fn cert(serial: &str, username: &str, issued_at: OffsetDateTime) -> IssuedCert {
    IssuedCert {
        serial: serial.into(),
        username: username.into(),
        subject: format!("/O=Example/OU=Users/CN={username}"),
        auth_method: "password".into(),
        retriever: None,
        // A key of its own per certificate, unless a test says otherwise.
        spki_sha256: format!("{:0>64}", serial.to_ascii_lowercase()),
        not_before: issued_at - time::Duration::minutes(5),
        not_after: issued_at + time::Duration::days(1),
        issued_at,
        client_addr: Some("192.0.2.7:51234".into()),
        der: vec![0x30, 0x82, 0x00, 0xff, 0x00, 0x01],
        revoked_at: None,
        revocation_reason: None,
        account_id: None,
        parent_serial: None,
        issuer_key_id: None,
    }
}

/// `cert` issued to `account` as a renewal of `parent`, for the key `spki`.
fn renewal(
    serial: &str,
    parent: &str,
    spki: &str,
    account: &User,
    at: OffsetDateTime,
) -> IssuedCert {
    IssuedCert {
        auth_method: "renewal".into(),
        spki_sha256: spki.into(),
        account_id: Some(account.account_id.clone()),
        parent_serial: Some(parent.into()),
        issuer_key_id: None,
        ..cert(serial, &account.username, at)
    }
}

fn serials(v: &[IssuedCert]) -> Vec<&str> {
    v.iter().map(|c| c.serial.as_str()).collect()
}

/// The backend-independent tests; each takes a fresh, empty database.
mod suite {
    use super::*;

    pub async fn users(fx: Fixture) {
        let s = fx.open().await;
        assert_eq!(s.get_user("alice").await.unwrap(), None);
        let alice = user("alice");
        s.add_user(&alice).await.unwrap();
        assert_eq!(s.get_user("alice").await.unwrap(), Some(alice.clone()));
        // Names are unique regardless of ASCII case: lookups ignore it and return
        // the stored spelling, and a name differing only in case is taken.
        assert_eq!(s.get_user("ALICE").await.unwrap(), Some(alice.clone()));
        match s.add_user(&user("Alice")).await {
            Err(StoreError::UserExists(n)) => assert_eq!(n, "Alice"),
            other => panic!("expected UserExists, got {other:?}"),
        }

        let mut again = user("alice");
        again.password_hash = "other".into();
        match s.add_user(&again).await {
            Err(StoreError::UserExists(n)) => assert_eq!(n, "alice"),
            other => panic!("expected UserExists, got {other:?}"),
        }
        // The failed insert changed nothing.
        assert_eq!(s.get_user("alice").await.unwrap(), Some(alice.clone()));

        let t1 = datetime!(2026-02-03 04:05:06 UTC);
        s.set_password("alice", "newhash", t1).await.unwrap();
        let a = s.get_user("alice").await.unwrap().unwrap();
        assert_eq!(a.password_hash, "newhash");
        assert_eq!(a.updated_at, t1);
        assert_eq!(a.created_at, alice.created_at);
        assert!(!a.disabled);

        let t2 = datetime!(2026-02-04 00:00:00 UTC);
        s.set_disabled("alice", true, t2).await.unwrap();
        let a = s.get_user("alice").await.unwrap().unwrap();
        assert!(a.disabled);
        assert_eq!(a.updated_at, t2);
        s.set_disabled("alice", false, t2).await.unwrap();
        assert!(!s.get_user("alice").await.unwrap().unwrap().disabled);

        // A directory entry created again is another person: a new account id,
        // the rest of the row kept.
        let t3 = datetime!(2026-02-05 00:00:00 UTC);
        s.set_account_id("ALICE", "ldap:new-uuid", t3)
            .await
            .unwrap();
        let a = s.get_user("alice").await.unwrap().unwrap();
        assert_eq!(a.account_id, "ldap:new-uuid");
        assert_eq!(a.updated_at, t3);
        assert_eq!(a.password_hash, "newhash");

        for name in ["bob", "Zed", "carol"] {
            s.add_user(&user(name)).await.unwrap();
        }
        let names: Vec<String> = s
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["Zed", "alice", "bob", "carol"], "bytewise order");

        s.remove_user("bob").await.unwrap();
        assert_eq!(s.get_user("bob").await.unwrap(), None);
        assert_eq!(s.list_users().await.unwrap().len(), 3);
        // A removed name can be used again.
        s.add_user(&user("bob")).await.unwrap();
    }

    pub async fn missing_user_errors(fx: Fixture) {
        let s = fx.open().await;
        let now = OffsetDateTime::now_utc();
        let nf = |r: onlineca_store::Result<()>| matches!(r, Err(StoreError::UserNotFound(n)) if n == "ghost");
        assert!(nf(s.set_password("ghost", "h", now).await));
        assert!(nf(s.set_disabled("ghost", true, now).await));
        assert!(nf(s.set_account_id("ghost", "x", now).await));
        assert!(nf(s.remove_user("ghost").await));
        s.add_user(&user("ghost")).await.unwrap();
        s.remove_user("ghost").await.unwrap();
        assert!(nf(s.remove_user("ghost").await));
    }

    pub async fn record_and_get(fx: Fixture) {
        let s = fx.open().await;
        assert_eq!(s.count_issued().await.unwrap(), 0);
        assert_eq!(s.get_issued("00ff").await.unwrap(), None);

        let t = datetime!(2026-03-01 12:00:00 UTC);
        let plain = cert("0a1b2c", "alice", t);
        s.record_issued(&plain).await.unwrap();
        assert_eq!(s.get_issued("0a1b2c").await.unwrap(), Some(plain.clone()));
        // Serials are hex: any case finds it.
        assert_eq!(s.get_issued("0A1B2C").await.unwrap(), Some(plain.clone()));

        // Every optional field filled, and a large DER.
        let mut full = cert("7f".repeat(20).as_str(), "bob", t);
        full.auth_method = "retriever".into();
        full.retriever = Some("/O=Example/CN=portal.example.org".into());
        full.client_addr = None;
        full.der = (0..=255u8).cycle().take(5000).collect();
        full.revoked_at = Some(t + time::Duration::hours(1));
        full.revocation_reason = Some(4);
        s.record_issued(&full).await.unwrap();
        assert_eq!(
            s.get_issued(&full.serial).await.unwrap(),
            Some(full.clone())
        );

        // A serial given in upper case is stored lowercased.
        let upper = cert("DEADBEEF", "carol", t);
        s.record_issued(&upper).await.unwrap();
        assert_eq!(
            s.get_issued("deadbeef").await.unwrap().unwrap().serial,
            "deadbeef"
        );

        match s.record_issued(&cert("0a1b2c", "mallory", t)).await {
            Err(StoreError::DuplicateSerial(serial)) => assert_eq!(serial, "0a1b2c"),
            other => panic!("expected DuplicateSerial, got {other:?}"),
        }
        match s.record_issued(&cert("0A1B2C", "mallory", t)).await {
            Err(StoreError::DuplicateSerial(serial)) => assert_eq!(serial, "0a1b2c"),
            other => panic!("expected DuplicateSerial, got {other:?}"),
        }
        assert_eq!(s.get_issued("0a1b2c").await.unwrap(), Some(plain));
        assert_eq!(s.count_issued().await.unwrap(), 3);
    }

    pub async fn list_filters(fx: Fixture) {
        let s = fx.open().await;
        let t0 = datetime!(2026-04-01 00:00:00 UTC);
        let at = |h: i64| t0 + time::Duration::hours(h);
        // serial, user, hour
        let rows = [
            ("01", "alice", 0),
            ("02", "bob", 1),
            ("03", "alice", 2),
            ("04", "alice", 3),
            ("05", "bob", 3),
            ("06", "alice", 5),
            ("07", "carol", 6),
        ];
        for (serial, u, h) in rows {
            s.record_issued(&cert(serial, u, at(h))).await.unwrap();
        }
        let list = |f: IssuedFilter| {
            let s = s.clone();
            async move { s.list_issued(&f).await.unwrap() }
        };
        let all = list(IssuedFilter::default()).await;
        // Newest first; the tie at hour 3 broken by serial, descending.
        assert_eq!(serials(&all), ["07", "06", "05", "04", "03", "02", "01"]);
        assert_eq!(all[1], cert("06", "alice", at(5)));

        let by_user = |u: &str| IssuedFilter {
            username: Some(u.into()),
            ..Default::default()
        };
        assert_eq!(
            serials(&list(by_user("alice")).await),
            ["06", "04", "03", "01"]
        );
        assert_eq!(serials(&list(by_user("bob")).await), ["05", "02"]);
        assert!(list(by_user("nobody")).await.is_empty());
        // One name regardless of ASCII case, as for accounts.
        assert_eq!(
            serials(&list(by_user("Alice")).await),
            ["06", "04", "03", "01"]
        );

        let since3 = IssuedFilter {
            since: Some(at(3)),
            ..Default::default()
        };
        assert_eq!(
            serials(&list(since3.clone()).await),
            ["07", "06", "05", "04"]
        );

        let alice_since2 = IssuedFilter {
            username: Some("alice".into()),
            since: Some(at(2)),
            ..Default::default()
        };
        assert_eq!(
            serials(&list(alice_since2.clone()).await),
            ["06", "04", "03"]
        );
        assert_eq!(
            serials(
                &list(IssuedFilter {
                    limit: Some(2),
                    ..alice_since2
                })
                .await
            ),
            ["06", "04"]
        );
        assert_eq!(
            serials(
                &list(IssuedFilter {
                    limit: Some(3),
                    ..Default::default()
                })
                .await
            ),
            ["07", "06", "05"]
        );
        assert_eq!(
            serials(
                &list(IssuedFilter {
                    limit: Some(1),
                    ..since3
                })
                .await
            ),
            ["07"]
        );
        assert!(
            list(IssuedFilter {
                limit: Some(0),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        assert!(
            list(IssuedFilter {
                since: Some(at(7)),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        assert_eq!(s.count_issued().await.unwrap(), 7);
    }

    pub async fn certificates_outlive_users(fx: Fixture) {
        let s = fx.open().await;
        s.add_user(&user("dave")).await.unwrap();
        let c = cert("aa", "dave", datetime!(2026-05-01 00:00 UTC));
        s.record_issued(&c).await.unwrap();
        s.remove_user("dave").await.unwrap();
        assert_eq!(s.get_issued("aa").await.unwrap(), Some(c));
        // Records need no user at all (e.g. issued before a user was removed).
        s.record_issued(&cert(
            "bb",
            "never-existed",
            datetime!(2026-05-01 00:00 UTC),
        ))
        .await
        .unwrap();
    }

    pub async fn times_are_whole_seconds(fx: Fixture) {
        let s = fx.open().await;
        let precise = datetime!(2026-06-01 10:20:30.987654321 UTC);
        let mut u = user("erin");
        u.created_at = precise;
        u.updated_at = precise.to_offset(time::macros::offset!(+2));
        s.add_user(&u).await.unwrap();
        let got = s.get_user("erin").await.unwrap().unwrap();
        assert_eq!(got.created_at, datetime!(2026-06-01 10:20:30 UTC));
        assert_eq!(got.updated_at, datetime!(2026-06-01 10:20:30 UTC));
        assert!(got.created_at.offset().is_utc());
        // Before the epoch too.
        let old = datetime!(1960-01-01 00:00:00 UTC);
        s.record_issued(&cert("01", "erin", old)).await.unwrap();
        assert_eq!(s.get_issued("01").await.unwrap().unwrap().issued_at, old);
    }

    pub async fn reopen_preserves_data(fx: Fixture) {
        let s = fx.open().await;
        let frank = user("frank");
        s.add_user(&frank).await.unwrap();
        let c = cert("cafe", "frank", datetime!(2026-07-01 00:00 UTC));
        s.record_issued(&c).await.unwrap();
        s.close().await;
        drop(s);

        let s = fx.open().await;
        assert_eq!(s.get_user("frank").await.unwrap(), Some(frank));
        assert_eq!(s.get_issued("cafe").await.unwrap(), Some(c));
        assert_eq!(s.count_issued().await.unwrap(), 1);
    }

    pub async fn migration_is_idempotent(fx: Fixture) {
        // Several instances starting at once on an empty database.
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = fx.url.clone();
                tokio::spawn(async move { open(&url).await })
            })
            .collect();
        for o in opens {
            let s = o.await.unwrap().expect("concurrent open");
            assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
        }
        let s = fx.open().await;
        s.add_user(&user("gina")).await.unwrap();
        drop(s);
        let s = fx.open().await;
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert!(s.get_user("gina").await.unwrap().is_some());
        assert_eq!(
            fx.query_i64("SELECT COUNT(*) FROM schema_version").await,
            SCHEMA_VERSION
        );
    }

    pub async fn newer_schema_is_refused(fx: Fixture) {
        drop(fx.open().await);
        fx.exec_raw(
            "INSERT INTO schema_version (version, description, applied_at) \
             VALUES (999, 'from the future', 0)",
        )
        .await;
        match open(&fx.url).await {
            Err(StoreError::Config(m)) => assert!(m.contains("999"), "{m}"),
            Err(e) => panic!("expected Config, got {e:?}"),
            Ok(_) => panic!("opened a database from the future"),
        }
    }

    pub async fn bad_row_data_is_corrupt(fx: Fixture) {
        let s = fx.open().await;
        s.record_issued(&cert("0bad", "hal", datetime!(2026-08-01 00:00 UTC)))
            .await
            .unwrap();
        s.add_user(&user("hal")).await.unwrap();
        // Far outside what `time` can represent.
        fx.exec_raw(
            "UPDATE certificates SET not_after = 9223372036854775807 WHERE serial = '0bad'",
        )
        .await;
        fx.exec_raw("UPDATE users SET created_at = -9223372036854775807 WHERE username = 'hal'")
            .await;
        assert!(matches!(
            s.get_issued("0bad").await,
            Err(StoreError::Corrupt(m)) if m.contains("not_after")
        ));
        assert!(matches!(
            s.list_issued(&IssuedFilter::default()).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            s.get_user("hal").await,
            Err(StoreError::Corrupt(m)) if m.contains("created_at")
        ));
        // The rest keeps working.
        assert_eq!(s.count_issued().await.unwrap(), 1);
    }

    pub async fn ping_and_close(fx: Fixture) {
        let s = fx.open().await;
        s.ping().await.unwrap();
        s.close().await;
        assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(
            s.record_issued(&cert("01", "x", OffsetDateTime::now_utc()))
                .await,
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            s.get_user("x").await,
            Err(StoreError::Unavailable(_))
        ));
    }

    pub async fn concurrent_writes(fx: Fixture) {
        let s = fx.open().await;
        let t = datetime!(2026-09-01 00:00 UTC);
        // 64 serials, 16 of them sent twice at once: writes that meet in one group
        // commit still fail alone on a clash, and each success is readable at once.
        let tasks: Vec<_> = (0..80u32)
            .map(|i| {
                let s = s.clone();
                let serial = format!("{:04x}", i % 64);
                tokio::spawn(async move {
                    match s.record_issued(&cert(&serial, "ivy", t)).await {
                        Ok(()) => Ok(s.get_issued(&serial).await.unwrap().is_some()),
                        Err(e) => Err(e),
                    }
                })
            })
            .collect();
        let (mut ok, mut clashes) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(found) => {
                    assert!(found, "a recorded certificate is readable");
                    ok += 1;
                }
                Err(StoreError::DuplicateSerial(_)) => clashes += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!((ok, clashes), (64, 16));
        assert_eq!(s.count_issued().await.unwrap(), 64);
    }

    pub async fn issued_with_account(fx: Fixture) {
        let s = fx.open().await;
        let t = datetime!(2026-09-01 00:00 UTC);
        assert_eq!(s.get_issued_with_account("0abc").await.unwrap(), None);
        // Issued to no account (a retriever's user the store does not know).
        s.record_issued(&cert("0DEF", "jo", t)).await.unwrap();
        let jo = user("JO");
        let c = IssuedCert {
            account_id: Some(jo.account_id.clone()),
            ..cert("0ABC", "jo", t)
        };
        s.record_issued(&c).await.unwrap();
        let got = s.get_issued_with_account("0abc").await.unwrap().unwrap();
        assert_eq!(got.0, s.get_issued("0abc").await.unwrap().unwrap());
        assert_eq!(got.0.account_id, c.account_id);
        assert_eq!(got.1, None, "the account does not exist yet");
        // The account it was issued to, reported under its stored name.
        s.add_user(&jo).await.unwrap();
        let account = |disabled| {
            Some(onlineca_store::Account {
                username: "JO".into(),
                disabled,
            })
        };
        let got = s.get_issued_with_account("0ABC").await.unwrap().unwrap();
        assert_eq!(got.1, account(false));
        s.set_disabled("jo", true, t).await.unwrap();
        let got = s.get_issued_with_account("0abc").await.unwrap().unwrap();
        assert_eq!(got.1, account(true));
        // A certificate issued to no account never gains one.
        let got = s.get_issued_with_account("0def").await.unwrap().unwrap();
        assert_eq!(got.1, None);
        // Removed and added again: the same name, another account.
        s.remove_user("jo").await.unwrap();
        let got = s.get_issued_with_account("0abc").await.unwrap().unwrap();
        assert_eq!(got.1, None);
        s.add_user(&user("jo")).await.unwrap();
        let got = s.get_issued_with_account("0abc").await.unwrap().unwrap();
        assert_eq!(
            got.1, None,
            "a new account of the same name is another person"
        );
    }

    /// Failed passwords: counted before the verdict, locked at the limit without
    /// counting more, restarted after the period, shared by two handles.
    pub async fn login_failures(fx: Fixture) {
        use onlineca_store::{LockoutPolicy, LoginAttempt, LoginFailures};
        let (a, b) = (fx.open().await, fx.open().await);
        let t = datetime!(2026-09-01 00:00 UTC);
        let at = |s: i64| t + time::Duration::seconds(s);
        let p = LockoutPolicy {
            max_failures: 3,
            period: time::Duration::seconds(60),
        };
        assert_eq!(a.login_failures("eve").await.unwrap(), None);
        for (s, i) in [(&a, 0), (&b, 1), (&a, 2)] {
            assert_eq!(
                s.count_login_attempt("eve", at(i), &p).await.unwrap(),
                LoginAttempt::Counted
            );
        }
        assert_eq!(
            b.count_login_attempt("eve", at(10), &p).await.unwrap(),
            LoginAttempt::Locked(at(62))
        );
        let f = a.login_failures("eve").await.unwrap().unwrap();
        assert_eq!(
            f,
            LoginFailures {
                failures: 3,
                last: at(2)
            }
        );
        assert_eq!(f.locked_until(&p, at(10)), Some(at(62)));
        assert_eq!(f.locked_until(&p, at(62)), None);
        // One attempt without a verdict is taken back.
        a.forgive_login_attempt("eve").await.unwrap();
        assert_eq!(
            b.count_login_attempt("eve", at(11), &p).await.unwrap(),
            LoginAttempt::Counted
        );
        // After the period the count starts again.
        assert_eq!(
            a.count_login_attempt("eve", at(80), &p).await.unwrap(),
            LoginAttempt::Counted
        );
        assert_eq!(a.login_failures("eve").await.unwrap().unwrap().failures, 1);
        b.count_login_attempt("bob", at(0), &p).await.unwrap();
        let names: Vec<String> = a
            .list_login_failures()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["bob", "eve"]);
        assert_eq!(a.sweep_login_failures(at(30)).await.unwrap(), 1, "bob");
        assert!(b.clear_login_failures("eve").await.unwrap());
        assert!(!b.clear_login_failures("eve").await.unwrap());
        assert!(a.list_login_failures().await.unwrap().is_empty());
    }

    /// An imported hash is replaced only while it is still the one read.
    pub async fn password_upgrade_is_compare_and_set(fx: Fixture) {
        let s = fx.open().await;
        let t = datetime!(2026-09-01 00:00 UTC);
        let u = User::new("Imp", "$2y$05$old", t).unwrap();
        s.add_user(&u).await.unwrap();
        assert!(
            s.upgrade_password("imp", "$2y$05$old", "$argon2id$new", t)
                .await
                .unwrap()
        );
        // Changed meanwhile: the second upgrade from the old hash does nothing.
        assert!(
            !s.upgrade_password("IMP", "$2y$05$old", "$argon2id$other", t)
                .await
                .unwrap()
        );
        assert_eq!(
            s.get_user("imp").await.unwrap().unwrap().password_hash,
            "$argon2id$new"
        );
        assert!(!s.upgrade_password("nobody", "a", "b", t).await.unwrap());
    }

    /// Revoking reaches renewals, transitively, but not the renewed-from, and not
    /// what is expired or revoked already.
    pub async fn revocation_reaches_renewals(fx: Fixture) {
        let s = fx.open().await;
        let t = datetime!(2026-09-01 00:00 UTC);
        let at = |m: i64| t + time::Duration::minutes(m);
        let kay = user("kay");
        s.add_user(&kay).await.unwrap();
        let key = "11".repeat(32);
        s.record_issued(&IssuedCert {
            account_id: Some(kay.account_id.clone()),
            spki_sha256: key.clone(),
            ..cert("c0", "kay", at(0))
        })
        .await
        .unwrap();
        s.record_issued(&renewal("c1", "c0", &key, &kay, at(1)))
            .await
            .unwrap();
        // c2 renews c1 with a new key; c3 and c4 branch from c2.
        s.record_issued(&renewal("c2", "c1", &"22".repeat(32), &kay, at(2)))
            .await
            .unwrap();
        s.record_issued(&renewal("c3", "c2", &"33".repeat(32), &kay, at(3)))
            .await
            .unwrap();
        s.record_issued(&renewal("c4", "c2", &"44".repeat(32), &kay, at(4)))
            .await
            .unwrap();
        assert_eq!(
            s.revoke("c1", at(5), 4).await.unwrap(),
            RevokeOutcome::Revoked { also: 3 }
        );
        let state = |serial: &'static str| {
            let s = s.clone();
            async move {
                let c = s.get_issued(serial).await.unwrap().unwrap();
                (c.revoked_at, c.revocation_reason)
            }
        };
        assert_eq!(state("c0").await, (None, None), "what c1 renewed stays");
        for serial in ["c1", "c2", "c3", "c4"] {
            assert_eq!(state(serial).await, (Some(at(5)), Some(4)), "{serial}");
        }
        // A renewal of a revoked certificate is refused when recorded, even if the
        // renewal was decided before the revocation.
        assert!(matches!(
            s.record_issued(&renewal("c5", "c3", &"55".repeat(32), &kay, at(6))).await,
            Err(StoreError::ParentRevoked(p)) if p == "c3"
        ));
        assert!(matches!(
            s.record_issued(&renewal("c6", "99", &"66".repeat(32), &kay, at(6)))
                .await,
            Err(StoreError::ParentRevoked(_))
        ));
        assert_eq!(s.get_issued("c5").await.unwrap(), None, "nothing recorded");
        assert_eq!(s.count_issued().await.unwrap(), 5);
    }

    /// keyCompromise revokes every certificate for the key and what was renewed
    /// from them, and the key is refused from then on, also after an earlier
    /// revocation for another reason.
    pub async fn key_compromise_reaches_the_key(fx: Fixture) {
        let s = fx.open().await;
        let t = datetime!(2026-09-01 00:00 UTC);
        let at = |m: i64| t + time::Duration::minutes(m);
        let kay = user("kay");
        let key = "11".repeat(32);
        let with_key = |serial: &str, u: &str, m: i64| IssuedCert {
            spki_sha256: key.clone(),
            ..cert(serial, u, at(m))
        };
        s.record_issued(&with_key("k0", "kay", 0)).await.unwrap();
        s.record_issued(&renewal("k1", "k0", &key, &kay, at(1)))
            .await
            .unwrap();
        s.record_issued(&renewal("k2", "k1", &"22".repeat(32), &kay, at(2)))
            .await
            .unwrap();
        // Another user's certificate for the same key, and one long expired.
        s.record_issued(&with_key("m0", "max", 3)).await.unwrap();
        s.record_issued(&IssuedCert {
            not_after: at(-1),
            ..with_key("old", "kay", -100)
        })
        .await
        .unwrap();
        s.record_issued(&cert("other", "kay", at(3))).await.unwrap();
        // First revoked as superseded: the key is still usable.
        assert_eq!(
            s.revoke("k0", at(4), 4).await.unwrap(),
            RevokeOutcome::Revoked { also: 2 }
        );
        s.record_issued(&with_key("k3", "kay", 5)).await.unwrap();
        // Then reported compromised: the revocation stands, its reason changes,
        // and every certificate for the key goes, with its renewals.
        assert_eq!(
            s.revoke("k0", at(6), 1).await.unwrap(),
            RevokeOutcome::Revoked { also: 2 }
        );
        let k0 = s.get_issued("k0").await.unwrap().unwrap();
        assert_eq!(
            (k0.revoked_at, k0.revocation_reason),
            (Some(at(4)), Some(1))
        );
        for serial in ["m0", "k3"] {
            let c = s.get_issued(serial).await.unwrap().unwrap();
            assert_eq!(
                (c.revoked_at, c.revocation_reason),
                (Some(at(6)), Some(1)),
                "{serial}"
            );
        }
        for serial in ["old", "other"] {
            assert_eq!(
                s.get_issued(serial).await.unwrap().unwrap().revoked_at,
                None,
                "{serial}"
            );
        }
        // Twice: nothing more to do.
        assert!(matches!(
            s.revoke("m0", at(7), 1).await.unwrap(),
            RevokeOutcome::AlreadyRevoked { .. }
        ));
        // The key is refused for anyone, by any route.
        assert!(matches!(
            s.record_issued(&with_key("k4", "zed", 8)).await,
            Err(StoreError::KeyCompromised)
        ));
        assert_eq!(s.get_issued("k4").await.unwrap(), None);
        s.record_issued(&cert("k5", "zed", at(8))).await.unwrap();
    }

    pub async fn user_queries_ignore_case(fx: Fixture) {
        let s = fx.open().await;
        let t = datetime!(2026-09-01 00:00 UTC);
        // A retriever's user recorded in lower case, the account added later as
        // `Lab-Q`: one person, one inventory.
        s.record_issued(&cert("0a01", "lab-q", t)).await.unwrap();
        s.record_issued(&cert("0a02", "Lab-Q", t)).await.unwrap();
        s.record_issued(&cert("0a03", "lab-r", t)).await.unwrap();
        let listed = s
            .list_issued(&IssuedFilter {
                username: Some("LAB-Q".into()),
                ..IssuedFilter::default()
            })
            .await
            .unwrap();
        let mut serials: Vec<_> = listed.iter().map(|c| c.serial.as_str()).collect();
        serials.sort();
        assert_eq!(serials, ["0a01", "0a02"]);
        let at = t + time::Duration::minutes(1);
        assert_eq!(s.revoke_user("lab-Q", at, 5).await.unwrap(), 2);
        assert!(
            s.get_issued("0a03")
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_none()
        );
    }

    pub async fn status_filters(fx: Fixture) {
        let s = fx.open().await;
        let t0 = datetime!(2026-10-01 00:00:00 UTC);
        let at = |h: i64| t0 + time::Duration::hours(h);
        // Each lives one day from its issue hour.
        for (serial, u, h) in [
            ("01", "kim", 0),
            ("02", "kim", 30),
            ("03", "lee", 31),
            ("04", "kim", 32),
        ] {
            s.record_issued(&cert(serial, u, at(h))).await.unwrap();
        }
        let now = at(33); // 01 has expired, the others are valid
        assert_eq!(
            s.revoke("04", at(32), 1).await.unwrap(),
            RevokeOutcome::Revoked { also: 0 }
        );
        assert_eq!(
            s.revoke("01", at(33), 4).await.unwrap(),
            RevokeOutcome::Revoked { also: 0 }
        );
        let list = |status, username: Option<&str>| {
            let s = s.clone();
            let f = IssuedFilter {
                status: Some(status),
                username: username.map(str::to_string),
                ..Default::default()
            };
            async move { s.list_issued(&f).await.unwrap() }
        };
        assert_eq!(
            serials(&list(StatusFilter::Valid(now), None).await),
            ["03", "02"]
        );
        assert_eq!(
            serials(&list(StatusFilter::Valid(now), Some("kim")).await),
            ["02"]
        );
        assert_eq!(
            serials(&list(StatusFilter::Expired(now), None).await),
            ["01"]
        );
        assert_eq!(
            serials(&list(StatusFilter::Revoked, None).await),
            ["04", "01"]
        );
        assert_eq!(
            serials(&list(StatusFilter::Revoked, Some("lee")).await),
            Vec::<&str>::new()
        );
        // Everything combined, limit last.
        let f = IssuedFilter {
            username: Some("kim".into()),
            since: Some(at(1)),
            status: Some(StatusFilter::Revoked),
            limit: Some(1),
            server: None,
        };
        assert_eq!(serials(&s.list_issued(&f).await.unwrap()), ["04"]);
        // Server certificates apart from users' certificates.
        let server = IssuedCert {
            auth_method: onlineca_store::SERVER_METHOD.into(),
            ..cert("0f", "www.example.org", at(1))
        };
        s.record_issued(&server).await.unwrap();
        let only = |server| IssuedFilter {
            server: Some(server),
            ..Default::default()
        };
        assert_eq!(serials(&s.list_issued(&only(true)).await.unwrap()), ["0f"]);
        assert!(!serials(&s.list_issued(&only(false)).await.unwrap()).contains(&"0f"));
    }

    pub async fn issuers_are_recorded_attributed_and_counted(fx: Fixture) {
        let s = fx.open().await;
        let t0 = datetime!(2026-11-01 00:00:00 UTC);
        let at = |h: i64| t0 + time::Duration::hours(h);
        // Two records from before rotation existed (no issuer), one from CA "bb".
        s.record_issued(&cert("01", "max", at(0))).await.unwrap();
        s.record_issued(&cert("02", "max", at(1))).await.unwrap();
        let signed_by_bb = IssuedCert {
            issuer_key_id: Some("bb".into()),
            ..cert("03", "ned", at(2))
        };
        s.record_issued(&signed_by_bb).await.unwrap();
        let counts = s.unexpired_by_issuer(at(3)).await.unwrap();
        assert_eq!(
            counts
                .iter()
                .map(|c| (c.key_id.as_deref(), c.unexpired))
                .collect::<Vec<_>>(),
            [(None, 2), (Some("bb"), 1)]
        );
        assert_eq!(s.attribute_issuer("aa").await.unwrap(), 2);
        assert_eq!(s.attribute_issuer("aa").await.unwrap(), 0, "only once");
        let counts = s.unexpired_by_issuer(at(3)).await.unwrap();
        let aa = counts
            .iter()
            .find(|c| c.key_id.as_deref() == Some("aa"))
            .unwrap();
        assert_eq!(
            (aa.unexpired, aa.last_not_after),
            (2, at(1) + time::Duration::days(1))
        );
        assert_eq!(
            s.get_issued("03")
                .await
                .unwrap()
                .unwrap()
                .issuer_key_id
                .as_deref(),
            Some("bb")
        );
        // Expired certificates are not counted; revoked ones carry their issuer.
        assert_eq!(s.unexpired_by_issuer(at(25)).await.unwrap().len(), 1);
        s.revoke("03", at(3), 0).await.unwrap();
        let revoked = s.revoked_unexpired(at(3)).await.unwrap();
        assert_eq!(revoked[0].issuer_key_id.as_deref(), Some("bb"));
    }

    pub async fn revocation(fx: Fixture) {
        let s = fx.open().await;
        let t0 = datetime!(2026-11-01 00:00:00 UTC);
        let at = |h: i64| t0 + time::Duration::hours(h);
        assert_eq!(
            s.revocation_mark().await.unwrap(),
            RevocationMark::default()
        );
        for (serial, u, h) in [
            ("0a", "max", 0),
            ("0b", "max", 1),
            ("0c", "max", 2),
            ("0d", "ned", 2),
        ] {
            s.record_issued(&cert(serial, u, at(h))).await.unwrap();
        }
        assert_eq!(
            s.revoke("0B", at(3), 1).await.unwrap(),
            RevokeOutcome::Revoked { also: 0 }
        );
        let got = s.get_issued("0b").await.unwrap().unwrap();
        assert_eq!(
            (got.revoked_at, got.revocation_reason),
            (Some(at(3)), Some(1))
        );
        // Twice: harmless, and the first revocation stands.
        assert_eq!(
            s.revoke("0b", at(4), 5).await.unwrap(),
            RevokeOutcome::AlreadyRevoked {
                at: at(3),
                reason: Some(1)
            }
        );
        assert_eq!(
            s.revoke("ff", at(4), 0).await.unwrap(),
            RevokeOutcome::NotFound
        );
        let mark1 = s.revocation_mark().await.unwrap();
        assert_eq!(
            mark1,
            RevocationMark {
                count: 1,
                latest: Some(at(3).unix_timestamp())
            }
        );

        // The user's unexpired, unrevoked certificates: 0a expired at hour 24.
        assert_eq!(s.revoke_user("max", at(25), 3).await.unwrap(), 1);
        assert_eq!(s.revoke_user("max", at(25), 3).await.unwrap(), 0);
        assert_eq!(s.revoke_user("nobody", at(25), 3).await.unwrap(), 0);
        assert_eq!(s.get_issued("0a").await.unwrap().unwrap().revoked_at, None);
        assert_eq!(
            s.get_issued("0c").await.unwrap().unwrap().revocation_reason,
            Some(3)
        );
        assert_ne!(s.revocation_mark().await.unwrap(), mark1);

        // 0b (issued at hour 1) expires at hour 25: a CRL then lists only 0c.
        let crl = s.revoked_unexpired(at(25)).await.unwrap();
        assert_eq!(crl.len(), 1);
        assert_eq!(crl[0].serial, "0c");
        assert_eq!((crl[0].revoked_at, crl[0].reason), (at(25), Some(3)));
        let crl = s.revoked_unexpired(at(24)).await.unwrap();
        assert_eq!(serials_of(&crl), ["0b", "0c"]);
    }

    pub async fn crl_numbers_grow_across_instances(fx: Fixture) {
        // Two "instances" on one database, taking numbers at once.
        let a = fx.open().await;
        let b = fx.open().await;
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { s.next_crl_number().await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (1..=40).collect::<Vec<u64>>(), "each number once");
        // And it survives a restart.
        a.close().await;
        b.close().await;
        assert_eq!(fx.open().await.next_crl_number().await.unwrap(), 41);
    }
}

fn serials_of(v: &[onlineca_store::RevokedEntry]) -> Vec<&str> {
    v.iter().map(|c| c.serial.as_str()).collect()
}

macro_rules! backend_tests {
    ($runner:ident: $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::$runner(crate::suite::$name).await;
            }
        )*
    };
}

macro_rules! suite_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite { backend_tests!(with_sqlite: $($name),*); }
        mod postgres { backend_tests!(with_pg: $($name),*); }
    };
}

suite_tests!(
    users,
    missing_user_errors,
    record_and_get,
    list_filters,
    certificates_outlive_users,
    times_are_whole_seconds,
    reopen_preserves_data,
    migration_is_idempotent,
    newer_schema_is_refused,
    bad_row_data_is_corrupt,
    ping_and_close,
    concurrent_writes,
    issued_with_account,
    revocation_reaches_renewals,
    password_upgrade_is_compare_and_set,
    login_failures,
    key_compromise_reaches_the_key,
    user_queries_ignore_case,
    status_filters,
    revocation,
    crl_numbers_grow_across_instances,
    issuers_are_recorded_attributed_and_counted,
);

/// SQLite specifics: file permissions, journal mode, URL forms.
mod sqlite_only {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn file_is_private() {
        with_sqlite(|fx| async move {
            let s = fx.open().await;
            s.add_user(&user("alice")).await.unwrap();
            let path = fx.path.clone().unwrap();
            assert_eq!(mode(&path), 0o600);
            // The WAL holds the same data: it must be as private.
            let wal = PathBuf::from(format!("{}-wal", path.display()));
            assert!(wal.exists(), "no WAL file");
            assert_eq!(mode(&wal), 0o600);
        })
        .await;
    }

    #[tokio::test]
    async fn wal_mode_is_on() {
        with_sqlite(|fx| async move {
            drop(fx.open().await);
            let mut c = SqliteConnection::connect(&fx.url).await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
        })
        .await;
    }

    #[tokio::test]
    async fn url_forms() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let cases = [
            (format!("sqlite://{d}/a.db"), "a.db"),
            (format!("sqlite:{d}/b.db"), "b.db"),
            (format!("{d}/c.db"), "c.db"),
            (format!("{d}/d.sqlite3"), "d.sqlite3"),
        ];
        for (url, file) in cases {
            let s = open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
            s.add_user(&user("u")).await.unwrap();
            s.close().await;
            assert!(dir.path().join(file).exists(), "{url}");
            // Reopening through another form reaches the same file.
            let s = open(&format!("sqlite://{d}/{file}")).await.unwrap();
            assert!(s.get_user("u").await.unwrap().is_some(), "{url}");
        }
    }

    #[tokio::test]
    async fn memory_store_works() {
        let s = open("sqlite::memory:").await.unwrap();
        s.add_user(&user("m")).await.unwrap();
        s.record_issued(&cert("01", "m", OffsetDateTime::now_utc()))
            .await
            .unwrap();
        assert!(s.get_user("m").await.unwrap().is_some());
        assert_eq!(s.count_issued().await.unwrap(), 1);
        assert_eq!(s.schema_version().await.unwrap(), SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn bad_urls_and_paths_are_config_errors() {
        for url in [
            "sqlite:/nonexistent-dir-onlineca/x/ca.db",
            "mysql://root@localhost/x",
            "ca.txt",
            "sqlite:ca.db?mode=rwc",
        ] {
            match open(url).await {
                Err(StoreError::Config(_)) => {}
                Err(e) => panic!("{url}: expected Config, got {e:?}"),
                Ok(_) => panic!("{url}: opened"),
            }
        }
    }

    #[tokio::test]
    async fn not_a_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        match open(&path.display().to_string()).await {
            Err(StoreError::Corrupt(_)) => {}
            Err(e) => panic!("unexpected error {e:?}"),
            Ok(_) => panic!("opened a junk file"),
        }
    }
}

/// PostgreSQL specifics.
mod postgres_only {
    use super::*;

    #[tokio::test]
    async fn bad_url_is_config_error_without_secrets() {
        match open("postgres://user:hunter2@[bad/db").await {
            Err(StoreError::Config(m)) => assert!(!m.contains("hunter2"), "{m}"),
            Err(e) => panic!("expected Config, got {e:?}"),
            Ok(_) => panic!("opened"),
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        // Nothing listens on port 1.
        match open("postgresql://postgres@127.0.0.1:1/test").await {
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("expected Unavailable, got {e:?}"),
            Ok(_) => panic!("connected to port 1"),
        }
    }
}
