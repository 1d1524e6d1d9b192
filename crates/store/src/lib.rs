//! Persistent store of onlineca: user accounts and the record of every issued
//! certificate, on SQLite or PostgreSQL behind one [`Store`] trait.
//!
//! Open a store with [`open`], which picks the backend from the URL and brings the
//! schema up to date. Times are kept as whole Unix seconds: sub-second parts of the
//! [`OffsetDateTime`]s handed in are dropped, and the values read back are UTC.

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

/// The certificate columns, in the order the INSERTs bind them; a macro so that the
/// SQL built with `concat!` stays a `&'static str` (what sqlx takes without ceremony).
macro_rules! cert_columns {
    () => {
        "serial, username, subject, auth_method, retriever, spki_sha256, not_before, \
         not_after, issued_at, client_addr, der, revoked_at, revocation_reason, \
         account_id, parent_serial, issuer_key_id"
    };
}

/// The user columns, in the order the INSERTs bind them.
macro_rules! user_columns {
    () => {
        "username, password_hash, disabled, created_at, updated_at, account_id"
    };
}

mod backend;
mod migrations;
mod postgres;
mod rows;
mod sqlite;
mod sqlite_hot;

pub use migrations::{Migrate, SCHEMA_VERSION};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Result of every store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A user with this name already exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// No user has this name.
    #[error("user {0:?} not found")]
    UserNotFound(String),
    /// A certificate with this serial is already recorded.
    #[error("a certificate with serial {0} is already recorded")]
    DuplicateSerial(String),
    /// The database could not carry out the operation: connection, I/O, lock
    /// timeout, pool exhausted or an unexpected database error. Maps to HTTP 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database holds data this program cannot read (bad row data, a damaged
    /// SQLite file).
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
    /// The database URL or the database itself is not usable as configured (bad
    /// URL, wrong credentials, missing database, schema newer than this program).
    #[error("store configuration: {0}")]
    Config(String),
    /// A certificate was not recorded because its public key was reported
    /// compromised (a certificate for it is revoked with reason keyCompromise).
    #[error("the public key was reported compromised")]
    KeyCompromised,
    /// A renewal was not recorded because the certificate it renews is revoked (or
    /// unknown) by now.
    #[error("the certificate being renewed ({0}) is revoked")]
    ParentRevoked(String),
    /// The schema is older than this program's and may not be upgraded on opening
    /// ([`Migrate::Explicit`]).
    #[error(
        "the database schema is at version {current} and this onlineca needs {latest}: \
         run `onlineca store migrate --config FILE` once (instances of the older release \
         stop working with the new schema), or set [store] auto_migrate = true"
    )]
    SchemaBehind {
        /// The version the database is at.
        current: i64,
        /// The version this program needs.
        latest: i64,
    },
}

/// A user account that may obtain certificates with a password.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The login name; also what goes into the certificate subject.
    pub username: String,
    /// The password hash in PHC string format.
    pub password_hash: String,
    /// A disabled user may not obtain certificates by any method.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: OffsetDateTime,
    /// When the account was last changed.
    pub updated_at: OffsetDateTime,
    /// Names this account for its whole life and no other: a user removed and added
    /// again under the same name is a new account with a new id, so certificates
    /// issued to the old one cannot renew into the new one. Made by [`User::new`].
    pub account_id: String,
}

impl User {
    /// A new, enabled account with a fresh random [`User::account_id`].
    pub fn new(
        username: impl Into<String>,
        password_hash: impl Into<String>,
        now: OffsetDateTime,
    ) -> Result<Self> {
        Ok(User {
            username: username.into(),
            password_hash: password_hash.into(),
            disabled: false,
            created_at: now,
            updated_at: now,
            account_id: new_account_id()?,
        })
    }
}

/// 128 random bits in lowercase hex: unique without coordination between instances.
fn new_account_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| {
        StoreError::Unavailable(format!("no random numbers for an account id: {e}"))
    })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

// Hand-written so that password hashes never end up in logs.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("disabled", &self.disabled)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("account_id", &self.account_id)
            .finish()
    }
}

/// What renewal needs to know of the account a certificate was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name, as stored.
    pub username: String,
    /// Whether the account is disabled.
    pub disabled: bool,
}

/// The record of one issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// Lowercase hex of the serial number's bytes; the primary key. The store
    /// lowercases what it is given.
    pub serial: String,
    /// The user the certificate was issued to.
    pub username: String,
    /// The certificate's subject DN as text.
    pub subject: String,
    /// How the request was authenticated: `"password"`, `"retriever"` or `"renewal"`.
    pub auth_method: String,
    /// Subject DN of the retriever, when a retriever asked on the user's behalf.
    pub retriever: Option<String>,
    /// Lowercase hex SHA-256 of the certified SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// Start of the validity period.
    pub not_before: OffsetDateTime,
    /// End of the validity period.
    pub not_after: OffsetDateTime,
    /// When the certificate was issued.
    pub issued_at: OffsetDateTime,
    /// Network address of the client that asked, when known.
    pub client_addr: Option<String>,
    /// The certificate in DER.
    pub der: Vec<u8>,
    /// When the certificate was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// The CRL reason code of the revocation, if any.
    pub revocation_reason: Option<i32>,
    /// The [`User::account_id`] of the account the certificate was issued to; `None`
    /// for a user the store has no account for (a retriever may vouch for such users).
    pub account_id: Option<String>,
    /// For a renewal, the serial of the certificate presented to renew: revoking that
    /// certificate revokes this one too.
    pub parent_serial: Option<String>,
    /// The key identifier (hex) of the CA that signed it: which CA's CRL lists it
    /// when revoked. `None` in records made before CAs could be rotated.
    pub issuer_key_id: Option<String>,
}

/// The CRL reason code keyCompromise (RFC 5280): revoking a certificate for it
/// revokes every certificate for the same public key and refuses new ones.
pub const REASON_KEY_COMPROMISE: i32 = 1;

/// Which issued certificates [`Store::list_issued`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuedFilter {
    /// Only this user's certificates.
    pub username: Option<String>,
    /// Only certificates issued at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only certificates in this state.
    pub status: Option<StatusFilter>,
    /// At most this many certificates (the newest ones).
    pub limit: Option<u32>,
    /// Only server certificates (`Some(true)`, signed by `cert sign`) or only user
    /// certificates (`Some(false)`).
    pub server: Option<bool>,
}

/// The `auth_method` recorded for server certificates an operator signed with
/// `onlineca cert sign` (no user authenticated for them).
pub const SERVER_METHOD: &str = "server";

/// A certificate state to list; the time the state is judged at is passed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Not revoked and not expired at this time.
    Valid(OffsetDateTime),
    /// Expired at this time (`not_after` at or before it), revoked or not.
    Expired(OffsetDateTime),
    /// Revoked, expired or not.
    Revoked,
}

/// What [`Store::revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The certificate is now revoked (or, already revoked, its reason is now
    /// keyCompromise).
    Revoked {
        /// Other certificates revoked with it: its renewals and their renewals, and
        /// for keyCompromise every certificate for the same key and their renewals.
        also: u64,
    },
    /// It was already revoked; nothing changed.
    AlreadyRevoked {
        /// When it was revoked.
        at: OffsetDateTime,
        /// The reason code recorded then.
        reason: Option<i32>,
    },
    /// No certificate has this serial.
    NotFound,
}

/// One revoked certificate, as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Lowercase hex of the serial number's bytes.
    pub serial: String,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// The CRL reason code, if one was recorded.
    pub reason: Option<i32>,
    /// The signing CA's key identifier (hex); `None` for records made before CAs
    /// could be rotated, which every CA's CRL lists.
    pub issuer_key_id: Option<String>,
}

/// The unexpired certificates of one signing CA ([`Store::unexpired_by_issuer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerCount {
    /// The CA's key identifier, hex; `None` for unattributed records.
    pub key_id: Option<String>,
    /// How many of its certificates have not expired.
    pub unexpired: u64,
    /// The latest notAfter among them.
    pub last_not_after: OffsetDateTime,
}

/// A cheap fingerprint of the revocations in the store: it changes whenever a
/// certificate is revoked (revocations are never undone), so a server can poll it to
/// learn that its CRL is stale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationMark {
    /// How many certificates are revoked.
    pub count: u64,
    /// The latest revocation time, as Unix seconds.
    pub latest: Option<i64>,
}

/// When failed passwords lock a username out: after `max_failures` failures, each
/// within `period` of the one before, until `period` after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock the name.
    pub max_failures: u32,
    /// How long failures are remembered, and the lockout lasts.
    pub period: time::Duration,
}

/// The failed passwords recorded for one username (lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures counted, each within the policy's period of the one before.
    pub failures: u32,
    /// When the last one was counted.
    pub last: OffsetDateTime,
}

impl LoginFailures {
    /// When the lockout these failures cause ends, if the name is locked at `now`.
    pub fn locked_until(
        &self,
        policy: &LockoutPolicy,
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        let until = self.last + policy.period;
        (self.failures >= policy.max_failures && until > now).then_some(until)
    }
}

/// What [`Store::count_login_attempt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// The attempt is counted as a failure until [`Store::clear_login_failures`]
    /// or [`Store::forgive_login_attempt`] says otherwise.
    Counted,
    /// The name is locked out until this time; nothing was counted.
    Locked(OffsetDateTime),
}

/// Storage of users and issued certificates.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds a user; [`StoreError::UserExists`] if the name is taken.
    async fn add_user(&self, u: &User) -> Result<()>;
    /// Replaces a user's password hash; [`StoreError::UserNotFound`] if there is no such user.
    async fn set_password(&self, username: &str, hash: &str, now: OffsetDateTime) -> Result<()>;
    /// Replaces a user's password hash `old` by `new`, only if it is still `old`
    /// (an imported hash upgraded at login must not undo a password the operator
    /// set meanwhile); whether it was replaced.
    async fn upgrade_password(
        &self,
        username: &str,
        old: &str,
        new: &str,
        now: OffsetDateTime,
    ) -> Result<bool>;
    /// Enables or disables a user; [`StoreError::UserNotFound`] if there is no such user.
    async fn set_disabled(&self, username: &str, disabled: bool, now: OffsetDateTime)
    -> Result<()>;
    /// Replaces the account id of a user: the name now belongs to another person (a
    /// directory entry deleted and created again), so that certificates of the old
    /// account no longer renew; [`StoreError::UserNotFound`] if there is no such user.
    async fn set_account_id(
        &self,
        username: &str,
        account_id: &str,
        now: OffsetDateTime,
    ) -> Result<()>;
    /// Removes a user (their certificate records stay); [`StoreError::UserNotFound`]
    /// if there is no such user.
    async fn remove_user(&self, username: &str) -> Result<()>;
    /// Looks a user up by name, ignoring ASCII case (names are unique that way); the
    /// `User` returned carries the name as stored.
    async fn get_user(&self, username: &str) -> Result<Option<User>>;
    /// All users, ordered by name (bytewise).
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Records an issued certificate. When this returns `Ok` the record is durable
    /// (committed and synced), so the certificate may be handed out.
    /// [`StoreError::DuplicateSerial`] if the serial is already recorded,
    /// [`StoreError::KeyCompromised`] if its key was reported compromised, and
    /// [`StoreError::ParentRevoked`] if it renews a certificate revoked meanwhile:
    /// both checked in the same transaction as the insert, so a revocation and a
    /// renewal racing each other cannot leave a live descendant.
    async fn record_issued(&self, c: &IssuedCert) -> Result<()>;
    /// Looks a certificate record up by serial (hex, any case).
    async fn get_issued(&self, serial: &str) -> Result<Option<IssuedCert>>;
    /// A certificate record with the state of the account it was issued to (by
    /// [`IssuedCert::account_id`]; `None` when that account no longer exists, even if
    /// another has its name now): what renewal decides on. The built-in backends
    /// answer in one query.
    async fn get_issued_with_account(
        &self,
        serial: &str,
    ) -> Result<Option<(IssuedCert, Option<Account>)>> {
        let Some(cert) = self.get_issued(serial).await? else {
            return Ok(None);
        };
        let account = match &cert.account_id {
            Some(id) => self
                .get_user(&cert.username)
                .await?
                .filter(|u| &u.account_id == id)
                .map(|u| Account {
                    username: u.username,
                    disabled: u.disabled,
                }),
            None => None,
        };
        Ok(Some((cert, account)))
    }
    /// Certificate records matching `filter`, newest first (by issue time, then
    /// serial descending).
    async fn list_issued(&self, filter: &IssuedFilter) -> Result<Vec<IssuedCert>>;
    /// How many certificates are recorded.
    async fn count_issued(&self) -> Result<u64>;
    /// Revokes one certificate (serial in hex, any case) at `at` with a CRL reason
    /// code, and with it every unexpired certificate renewed from it (transitively).
    /// With [`REASON_KEY_COMPROMISE`] it also revokes every unexpired certificate for
    /// the same public key and their renewals, and the key is refused from then on.
    /// Revoking a revoked certificate changes nothing and says so, except that a
    /// revocation for keyCompromise upgrades an earlier reason (and reaches the key).
    async fn revoke(&self, serial: &str, at: OffsetDateTime, reason: i32) -> Result<RevokeOutcome>;
    /// Revokes every certificate of `username` that is neither revoked nor expired at
    /// `at`; returns how many were revoked.
    async fn revoke_user(&self, username: &str, at: OffsetDateTime, reason: i32) -> Result<u64>;
    /// The revoked certificates that have not expired at `now`, by serial: what a CRL
    /// issued at `now` must list.
    async fn revoked_unexpired(&self, now: OffsetDateTime) -> Result<Vec<RevokedEntry>>;
    /// Records `key_id` as the signing CA of every certificate recorded without one:
    /// `ca rotate` runs it before the first rotation, when they all came from the
    /// CA being retired. Returns how many records it attributed.
    async fn attribute_issuer(&self, key_id: &str) -> Result<u64>;
    /// How many certificates unexpired at `now` each CA signed, by key identifier
    /// (`None`, first: records made before CAs could be rotated), with the last notAfter.
    async fn unexpired_by_issuer(&self, now: OffsetDateTime) -> Result<Vec<IssuerCount>>;
    /// The current [`RevocationMark`].
    async fn revocation_mark(&self) -> Result<RevocationMark>;
    /// Takes the next CRL number: 1, 2, 3, ..., each handed out once, across every
    /// process sharing the database.
    async fn next_crl_number(&self) -> Result<u64>;
    /// Counts a password attempt for `name` (lower case) at `now` as a failure
    /// *before* its verdict, so that attempts in flight at several instances cannot
    /// all pass the check before any is recorded; refused without counting when the
    /// name is locked out. One atomic statement: every instance sharing the database
    /// shares the count.
    async fn count_login_attempt(
        &self,
        name: &str,
        now: OffsetDateTime,
        policy: &LockoutPolicy,
    ) -> Result<LoginAttempt>;
    /// Takes back one attempt of `name` that ended without a verdict.
    async fn forgive_login_attempt(&self, name: &str) -> Result<()>;
    /// Forgets the failures of `name` (a right password, or the operator's unlock);
    /// whether there were any.
    async fn clear_login_failures(&self, name: &str) -> Result<bool>;
    /// The failures recorded for `name`, if any.
    async fn login_failures(&self, name: &str) -> Result<Option<LoginFailures>>;
    /// Every name with failures recorded, by name.
    async fn list_login_failures(&self) -> Result<Vec<(String, LoginFailures)>>;
    /// Forgets failures last counted before `before` (they no longer count); returns
    /// how many names were forgotten. Bounds the table under a spray of names.
    async fn sweep_login_failures(&self, before: OffsetDateTime) -> Result<u64>;
    /// Checks that the database answers; for health checks.
    async fn ping(&self) -> Result<()>;
    /// The schema version the database is at.
    async fn schema_version(&self) -> Result<i64>;
    /// Closes the connections, waiting for operations under way; call at shutdown.
    /// With the built-in backends later calls fail with [`StoreError::Unavailable`].
    async fn close(&self) {}
}

/// Opens the store named by `url` and applies any pending schema migrations.
///
/// Accepted forms:
/// - `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite:path.db`, or a bare
///   path ending in `.db`, `.sqlite` or `.sqlite3`: a SQLite file, created (mode
///   0600) if missing. Paths are taken literally (no percent-decoding, no query).
/// - `sqlite::memory:`: a private SQLite database that vanishes with the store (a
///   file in a temporary directory), for tests.
/// - `postgres://...` or `postgresql://...`: PostgreSQL, with sqlx's URL syntax
///   (e.g. `?options=-c%20search_path%3Dmyschema`).
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, &OpenOptions::default()).await
}

/// Like [`open`], with the migration policy and PostgreSQL's TLS and password
/// settings of `opts`.
pub async fn open_with(url: &str, opts: &OpenOptions) -> Result<Arc<dyn Store>> {
    if is_postgres(url) {
        return Ok(Arc::new(PgStore::connect_opts(url, opts).await?));
    }
    match sqlite_target(url)? {
        SqliteTarget::Memory => Ok(Arc::new(SqliteStore::open_memory().await?)),
        SqliteTarget::File(path) => Ok(Arc::new(SqliteStore::open_with(path, opts.migrate).await?)),
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// How to open a store, beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Whether opening may change the schema.
    pub migrate: Migrate,
    /// PostgreSQL's TLS and password settings (ignored for SQLite).
    pub postgres: PgOptions,
}

/// PostgreSQL connection settings kept beside the URL (each overrides the URL's own).
#[derive(Clone, Default)]
pub struct PgOptions {
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub sslmode: Option<String>,
    /// The CA certificate(s) the server's certificate must chain to (PEM).
    pub sslrootcert: Option<std::path::PathBuf>,
    /// A client certificate to present (PEM).
    pub sslcert: Option<std::path::PathBuf>,
    /// Its key (PEM).
    pub sslkey: Option<std::path::PathBuf>,
    /// The password, when not in the URL.
    pub password: Option<String>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A database's schema: where it is and what this program would apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The version it is at (0: no schema yet).
    pub current: i64,
    /// The version this program creates.
    pub latest: i64,
    /// Migrations applied, as (version, description, when).
    pub applied: Vec<(i64, String, OffsetDateTime)>,
    /// Migrations this program would apply, as (version, description).
    pub pending: Vec<(i64, &'static str)>,
}

/// The schema of the database at `url`, read without changing anything (a SQLite
/// file that does not exist is an empty database).
pub async fn schema_status(url: &str, opts: &OpenOptions) -> Result<SchemaStatus> {
    let rows = if is_postgres(url) {
        postgres::schema_rows(url, &opts.postgres).await?
    } else {
        match sqlite_target(url)? {
            SqliteTarget::Memory => Vec::new(),
            SqliteTarget::File(path) => sqlite::schema_rows(path).await?,
        }
    };
    let current = rows.iter().map(|r| r.0).max().unwrap_or(0);
    let applied = rows
        .into_iter()
        .map(|(v, d, at)| Ok((v, d, from_secs("applied_at", at)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(SchemaStatus {
        current,
        latest: SCHEMA_VERSION,
        applied,
        pending: migrations::pending_after(current),
    })
}

/// Where a SQLite URL points.
#[derive(Debug, PartialEq, Eq)]
enum SqliteTarget<'a> {
    Memory,
    File(&'a str),
}

/// Parses the SQLite forms [`open`] accepts.
fn sqlite_target(url: &str) -> Result<SqliteTarget<'_>> {
    let path = if let Some(rest) = url.strip_prefix("sqlite:") {
        if rest == ":memory:" || rest == "//:memory:" {
            return Ok(SqliteTarget::Memory);
        }
        // `sqlite:///abs` keeps its leading slash; `sqlite://rel` and `sqlite:rel` are relative.
        rest.strip_prefix("//").unwrap_or(rest)
    } else if [".db", ".sqlite", ".sqlite3"]
        .iter()
        .any(|ext| url.ends_with(ext))
        && !url.contains("://")
    {
        url
    } else {
        // Do not echo the URL: a PostgreSQL-like URL with a typo may hold a password.
        return Err(StoreError::Config(
            "unsupported database URL: expected sqlite:PATH, a path ending in .db, \
             or postgres://..."
                .into(),
        ));
    };
    if path.is_empty() {
        return Err(StoreError::Config("SQLite URL without a file path".into()));
    }
    if path.contains('?') {
        return Err(StoreError::Config(format!(
            "SQLite URL parameters are not supported: {path:?}"
        )));
    }
    Ok(SqliteTarget::File(path))
}

/// Maps a sqlx error that has no operation-specific meaning.
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::Configuration(e) => StoreError::Config(e.to_string()),
        E::Database(db) => map_db_err(db.as_ref()),
        e @ (E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. }
        | E::RowNotFound) => StoreError::Corrupt(e.to_string()),
        // Io, Tls, Protocol, PoolTimedOut, PoolClosed, WorkerCrashed and the rest:
        // the store cannot do its job right now.
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// Maps an error the database itself reported.
fn map_db_err(db: &dyn sqlx::error::DatabaseError) -> StoreError {
    let code = db.code();
    let code = code.as_deref().unwrap_or("");
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite reports extended result codes; the primary code is the low byte.
        let primary = code.parse::<i32>().map(|c| c & 0xff).unwrap_or(-1);
        // SQLITE_CORRUPT (11), SQLITE_NOTADB (26).
        if primary == 11 || primary == 26 {
            return StoreError::Corrupt(db.to_string());
        }
    } else if code.starts_with("28") || code == "3D000" || code == "3F000" {
        // PostgreSQL: invalid authorization (28xxx), no such database or schema.
        return StoreError::Config(db.to_string());
    }
    StoreError::Unavailable(db.to_string())
}

/// Whether `e` is a unique or primary key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// `UserNotFound` when an update or delete touched no row.
pub(crate) fn found(rows: u64, username: &str) -> Result<()> {
    if rows == 0 {
        Err(StoreError::UserNotFound(username.to_owned()))
    } else {
        Ok(())
    }
}

/// Converts to the stored representation: whole Unix seconds.
pub(crate) fn to_secs(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// Converts from the stored representation; out-of-range values are corrupt data.
pub(crate) fn from_secs(column: &str, secs: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| StoreError::Corrupt(format!("column {column}: {secs}: {e}")))
}

/// The `LIMIT` bound for a filter: none is "all rows".
pub(crate) fn limit_of(filter: &IssuedFilter) -> i64 {
    filter.limit.map_or(i64::MAX, i64::from)
}

/// A value bound to a statement built by [`list_issued_sql`].
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// The `list_issued` statement for `filter` and its arguments, in order.
/// Parameters are `$1`, `$2`, ... (sqlx binds that form on both backends).
///
/// Only fixed fragments go into the SQL (values are always bound), and each
/// condition is a plain comparison on an indexed column, so the planner can use
/// `(lower(username), issued_at)`, `not_after`, `revoked_at` or `issued_at` as it sees fit
/// (an `? IS NULL OR ...` form would defeat them).
pub(crate) fn list_issued_sql(filter: &IssuedFilter) -> (String, Vec<Arg>) {
    let mut conds: Vec<String> = Vec::new();
    let mut args = Vec::new();
    let bind = |args: &mut Vec<Arg>, a: Arg| {
        args.push(a);
        format!("${}", args.len())
    };
    if let Some(u) = &filter.username {
        // Names are one regardless of ASCII case: a certificate recorded as
        // `lab-q` belongs to the account `Lab-Q` (index on `lower(username)`).
        conds.push(format!(
            "lower(username) = lower({})",
            bind(&mut args, Arg::Text(u.clone()))
        ));
    }
    if let Some(since) = filter.since {
        conds.push(format!(
            "issued_at >= {}",
            bind(&mut args, Arg::Int(to_secs(since)))
        ));
    }
    match filter.server {
        Some(true) => conds.push(format!("auth_method = '{SERVER_METHOD}'")),
        Some(false) => conds.push(format!("auth_method <> '{SERVER_METHOD}'")),
        None => {}
    }
    match filter.status {
        Some(StatusFilter::Valid(at)) => conds.push(format!(
            "revoked_at IS NULL AND not_after > {}",
            bind(&mut args, Arg::Int(to_secs(at)))
        )),
        Some(StatusFilter::Expired(at)) => conds.push(format!(
            "not_after <= {}",
            bind(&mut args, Arg::Int(to_secs(at)))
        )),
        Some(StatusFilter::Revoked) => conds.push("revoked_at IS NOT NULL".into()),
        None => {}
    }
    let mut sql = concat!("SELECT ", cert_columns!(), " FROM certificates").to_string();
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    let limit = bind(&mut args, Arg::Int(limit_of(filter)));
    sql.push_str(&format!(
        " ORDER BY issued_at DESC, serial DESC LIMIT {limit}"
    ));
    (sql, args)
}

/// The [`RevocationMark`] query, the same on both backends; it reads only the
/// `revoked_at` index.
pub(crate) const REVOCATION_MARK: &str = "SELECT COUNT(revoked_at) AS n, MAX(revoked_at) AS latest \
     FROM certificates WHERE revoked_at IS NOT NULL";

/// Takes the next CRL number, the same on both backends (SQLite 3.35+ and PostgreSQL
/// both have `RETURNING`).
pub(crate) const NEXT_CRL_NUMBER: &str =
    "UPDATE crl_number SET value = value + 1 WHERE id = 1 RETURNING value";

/// The outcome of a revocation that changed no row: the certificate is either
/// unknown or already revoked (`row` is what the store holds for the serial).
pub(crate) fn already_revoked(row: Option<RevokedRow>) -> Result<RevokeOutcome> {
    match row {
        None => Ok(RevokeOutcome::NotFound),
        Some(RevokedRow {
            revoked_at: Some(at),
            reason,
        }) => Ok(RevokeOutcome::AlreadyRevoked { at, reason }),
        // Unrevoked yet the guarded UPDATE matched nothing: cannot happen short of a
        // concurrent schema change, so report it rather than pretend.
        Some(_) => Err(StoreError::Unavailable(
            "the certificate could not be revoked; try again".into(),
        )),
    }
}

/// The revocation columns of one certificate row.
pub(crate) struct RevokedRow {
    pub revoked_at: Option<OffsetDateTime>,
    pub reason: Option<i32>,
}

/// Checks a count read from the database.
pub(crate) fn count(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative count {n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_url_forms() {
        use SqliteTarget::*;
        let ok = |u| sqlite_target(u).unwrap();
        assert_eq!(ok("sqlite:///abs/path.db"), File("/abs/path.db"));
        assert_eq!(ok("sqlite://relative.db"), File("relative.db"));
        assert_eq!(ok("sqlite:path.db"), File("path.db"));
        assert_eq!(ok("sqlite:/abs/x"), File("/abs/x"));
        assert_eq!(
            ok("/var/lib/onlineca/ca.db"),
            File("/var/lib/onlineca/ca.db")
        );
        assert_eq!(ok("ca.db"), File("ca.db"));
        assert_eq!(ok("sqlite::memory:"), Memory);
        for bad in [
            "sqlite:",
            "sqlite://",
            "sqlite:x.db?mode=ro",
            "mysql://u:p@h/x",
            "ca.txt",
            "",
            "http://x/y.db",
        ] {
            assert!(
                matches!(sqlite_target(bad), Err(StoreError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_url_does_not_echo_secrets() {
        let Err(e) = sqlite_target("postgress://u:hunter2@h/db") else {
            panic!("accepted")
        };
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn user_debug_hides_hash() {
        let u = User::new("alice", "$argon2id$secret", OffsetDateTime::UNIX_EPOCH).unwrap();
        assert!(!format!("{u:?}").contains("secret"));
        assert_eq!(u.account_id.len(), 32);
        let v = User::new("alice", "x", OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_ne!(u.account_id, v.account_id, "every account its own id");
    }

    #[test]
    fn out_of_range_time_is_corrupt() {
        assert!(matches!(
            from_secs("x", i64::MAX),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(from_secs("x", 0).unwrap(), OffsetDateTime::UNIX_EPOCH);
    }
}
