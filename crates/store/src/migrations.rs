//! Schema migrations: an ordered list per backend, applied in one transaction and
//! tracked in a `schema_version` table (one row per applied migration).
//!
//! Hand-rolled because sqlx's `migrate!` needs the `macros` feature. Never edit a
//! released migration; append a new one and bump [`SCHEMA_VERSION`].

use sqlx::{PgPool, Row, SqlitePool};

use crate::{Result, StoreError, map_err};

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i64 = 7;

/// One step of the schema.
pub(crate) struct Migration {
    /// Position in the sequence, from 1 without gaps.
    pub version: i64,
    /// What the step does, for the `schema_version` table.
    pub description: &'static str,
    /// The statements, run in order.
    pub statements: &'static [&'static str],
}

/// SQLite schema. Times are BIGINT Unix seconds, booleans 0/1.
pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        description: "users and certificates",
        statements: &[
            "CREATE TABLE users (
            username      TEXT    NOT NULL PRIMARY KEY,
            password_hash TEXT    NOT NULL,
            disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
            created_at    BIGINT  NOT NULL,
            updated_at    BIGINT  NOT NULL
        )",
            // No foreign key to users: the record of a certificate outlives its user.
            "CREATE TABLE certificates (
            serial            TEXT    NOT NULL PRIMARY KEY,
            username          TEXT    NOT NULL,
            subject           TEXT    NOT NULL,
            auth_method       TEXT    NOT NULL,
            retriever         TEXT,
            spki_sha256       TEXT    NOT NULL,
            not_before        BIGINT  NOT NULL,
            not_after         BIGINT  NOT NULL,
            issued_at         BIGINT  NOT NULL,
            client_addr       TEXT,
            der               BLOB    NOT NULL,
            revoked_at        BIGINT,
            revocation_reason INTEGER
        )",
            "CREATE INDEX certificates_username_issued_at ON certificates (username, issued_at)",
            // For listing everyone's newest certificates without a sort of the whole table.
            "CREATE INDEX certificates_issued_at ON certificates (issued_at)",
            "CREATE INDEX certificates_not_after ON certificates (not_after)",
            "CREATE INDEX certificates_revoked_at ON certificates (revoked_at)",
        ],
    },
    CRL_NUMBER,
    USERNAMES_IGNORE_CASE,
    CERTIFICATES_BY_LOWER_USERNAME,
    Migration {
        version: 5,
        description: ACCOUNTS_AND_LINEAGE_DESCRIPTION,
        statements: &[
            "ALTER TABLE users ADD COLUMN account_id TEXT",
            "UPDATE users SET account_id = lower(hex(randomblob(16)))",
            ACCOUNT_ID_UNIQUE,
            CERT_ACCOUNT_ID,
            CERT_PARENT_SERIAL,
            BIND_EXISTING_CERTIFICATES,
            CERTS_BY_KEY,
            CERTS_BY_PARENT,
        ],
    },
    LOGIN_FAILURES,
    ISSUER_KEY_ID,
];

/// Migration 6, the same text on both backends: failed passwords per username (in
/// lower case), in the store so that every instance sharing it gives an attacker
/// the same few guesses, not a few per instance.
/// Version 7: which CA signed each certificate, so that after a rotation each
/// issuing CA's CRL lists its own and `ca status` counts them. The same for both
/// backends; older records stay NULL until `ca rotate` attributes them.
const ISSUER_KEY_ID: Migration = Migration {
    version: 7,
    description: "the signing CA of each certificate",
    statements: &[
        "ALTER TABLE certificates ADD COLUMN issuer_key_id TEXT",
        "CREATE INDEX certificates_issuer_key_id ON certificates (issuer_key_id, not_after)",
    ],
};

const LOGIN_FAILURES: Migration = Migration {
    version: 6,
    description: "failed passwords shared by every instance",
    statements: &[
        "CREATE TABLE login_failures (
            name         TEXT   NOT NULL PRIMARY KEY,
            failures     BIGINT NOT NULL,
            last_failure BIGINT NOT NULL
        )",
        "CREATE INDEX login_failures_last ON login_failures (last_failure)",
    ],
};

/// Migration 5: accounts get an id of their own, and certificates record the
/// account they were issued to and the certificate they renew, so that renewal
/// follows the account rather than the name, and revocation reaches renewals and
/// (for keyCompromise) every certificate for the same key. Certificates recorded
/// before are bound to the account that holds their name when the migration runs.
const ACCOUNTS_AND_LINEAGE_DESCRIPTION: &str = "account ids, renewal lineage, certificates by key";
const ACCOUNT_ID_UNIQUE: &str = "CREATE UNIQUE INDEX users_account_id ON users (account_id)";
const CERT_ACCOUNT_ID: &str = "ALTER TABLE certificates ADD COLUMN account_id TEXT";
const CERT_PARENT_SERIAL: &str = "ALTER TABLE certificates ADD COLUMN parent_serial TEXT";
const BIND_EXISTING_CERTIFICATES: &str = "UPDATE certificates SET account_id = \
     (SELECT u.account_id FROM users u WHERE lower(u.username) = lower(certificates.username))";
const CERTS_BY_KEY: &str = "CREATE INDEX certificates_spki_sha256 ON certificates (spki_sha256)";
const CERTS_BY_PARENT: &str =
    "CREATE INDEX certificates_parent_serial ON certificates (parent_serial)";

/// Migration 3, the same text on both backends: usernames are unique regardless of
/// ASCII case (relying parties compare subjects that way), and looked up by
/// `lower(username)` through this index.
const USERNAMES_IGNORE_CASE: Migration = Migration {
    version: 3,
    description: "usernames unique regardless of case",
    statements: &["CREATE UNIQUE INDEX users_username_lower ON users (lower(username))"],
};

/// Migration 4, the same text on both backends: certificates are found by the same
/// canonical name as users (`lower(username)`), so that listing or revoking by name
/// reaches every spelling a certificate was recorded under.
const CERTIFICATES_BY_LOWER_USERNAME: Migration = Migration {
    version: 4,
    description: "certificates by user regardless of case",
    statements: &[
        "DROP INDEX certificates_username_issued_at",
        "CREATE INDEX certificates_username_lower_issued_at \
         ON certificates (lower(username), issued_at)",
    ],
};

/// Migration 2, the same text on both backends: the CRL number, one row that
/// `UPDATE ... RETURNING` increments atomically, so that every instance sharing the
/// database hands out a different, growing number.
const CRL_NUMBER: Migration = Migration {
    version: 2,
    description: "CRL number counter",
    statements: &[
        "CREATE TABLE crl_number (
            id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
            value BIGINT  NOT NULL
        )",
        "INSERT INTO crl_number (id, value) VALUES (1, 0)",
    ],
};

/// PostgreSQL schema; the same shape as [`SQLITE`].
pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        description: "users and certificates",
        statements: &[
            "CREATE TABLE users (
            username      TEXT    NOT NULL PRIMARY KEY,
            password_hash TEXT    NOT NULL,
            disabled      BOOLEAN NOT NULL DEFAULT FALSE,
            created_at    BIGINT  NOT NULL,
            updated_at    BIGINT  NOT NULL
        )",
            "CREATE TABLE certificates (
            serial            TEXT    NOT NULL PRIMARY KEY,
            username          TEXT    NOT NULL,
            subject           TEXT    NOT NULL,
            auth_method       TEXT    NOT NULL,
            retriever         TEXT,
            spki_sha256       TEXT    NOT NULL,
            not_before        BIGINT  NOT NULL,
            not_after         BIGINT  NOT NULL,
            issued_at         BIGINT  NOT NULL,
            client_addr       TEXT,
            der               BYTEA   NOT NULL,
            revoked_at        BIGINT,
            revocation_reason INTEGER
        )",
            "CREATE INDEX certificates_username_issued_at ON certificates (username, issued_at)",
            "CREATE INDEX certificates_issued_at ON certificates (issued_at)",
            "CREATE INDEX certificates_not_after ON certificates (not_after)",
            "CREATE INDEX certificates_revoked_at ON certificates (revoked_at)",
        ],
    },
    CRL_NUMBER,
    USERNAMES_IGNORE_CASE,
    CERTIFICATES_BY_LOWER_USERNAME,
    Migration {
        version: 5,
        description: ACCOUNTS_AND_LINEAGE_DESCRIPTION,
        statements: &[
            "ALTER TABLE users ADD COLUMN account_id TEXT",
            // Unique, not secret: md5 of a random value works on every supported version.
            "UPDATE users SET account_id = md5(random()::text || clock_timestamp()::text || username)",
            ACCOUNT_ID_UNIQUE,
            CERT_ACCOUNT_ID,
            CERT_PARENT_SERIAL,
            BIND_EXISTING_CERTIFICATES,
            CERTS_BY_KEY,
            CERTS_BY_PARENT,
        ],
    },
    LOGIN_FAILURES,
    ISSUER_KEY_ID,
];

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version     BIGINT NOT NULL PRIMARY KEY,
    description TEXT   NOT NULL,
    applied_at  BIGINT NOT NULL
)";
/// The migrations applied, oldest first (see `rows::applied_from_row`).
pub(crate) const SELECT_APPLIED: &str =
    "SELECT version, description, applied_at FROM schema_version ORDER BY version";
/// The version recorded in `schema_version` (0 for an empty database), as `v`.
pub(crate) const SELECT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) AS v FROM schema_version";

/// Key of the PostgreSQL advisory lock that serialises instances migrating the same
/// database at once ("onlineca" in ASCII).
const PG_LOCK_KEY: i64 = 0x6f6e_6c69_6e65_6361;

/// Refuses a database that a newer build has migrated past what this one knows.
fn check_not_newer(current: i64) -> Result<()> {
    if current > SCHEMA_VERSION {
        return Err(StoreError::Config(format!(
            "database schema version {current} is newer than this program supports \
             ({SCHEMA_VERSION}); upgrade onlineca"
        )));
    }
    Ok(())
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether opening a store may change its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Migrate {
    /// Apply every pending migration (the embedded SQLite default, `store migrate`,
    /// `[store] auto_migrate = true`).
    #[default]
    Auto,
    /// Create the schema in an empty database, but refuse an older schema: instances
    /// of the previous release may still be using it (`onlineca store migrate`
    /// upgrades it, once, deliberately).
    Explicit,
}

/// Refuses an older schema under [`Migrate::Explicit`] (an empty one is created).
fn check_policy(current: i64, policy: Migrate) -> Result<()> {
    if policy == Migrate::Explicit && current > 0 && current < SCHEMA_VERSION {
        return Err(StoreError::SchemaBehind {
            current,
            latest: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The migrations the schema at `current` lacks, as (version, description).
pub fn pending_after(current: i64) -> Vec<(i64, &'static str)> {
    SQLITE
        .iter()
        .filter(|m| m.version > current)
        .map(|m| (m.version, m.description))
        .collect()
}

/// The part of a migration run both backends share, inside a transaction `$tx` that
/// already holds the backend's lock: make sure the version table exists, read the
/// version, refuse a newer schema (or, under `$policy`, an older one), and apply what
/// `$list` has beyond it.
macro_rules! apply_pending {
    ($tx:ident, $list:expr, $policy:expr) => {{
        sqlx::query(CREATE_VERSION_TABLE)
            .execute(&mut *$tx)
            .await
            .map_err(map_err)?;
        let current: i64 = sqlx::query(SELECT_VERSION)
            .fetch_one(&mut *$tx)
            .await
            .and_then(|r| r.try_get("v"))
            .map_err(map_err)?;
        check_not_newer(current)?;
        check_policy(current, $policy)?;
        for m in $list.iter().filter(|m| m.version > current) {
            for stmt in m.statements {
                sqlx::query(*stmt)
                    .execute(&mut *$tx)
                    .await
                    .map_err(map_err)?;
            }
            sqlx::query(
                "INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.description)
            .bind(now_secs())
            .execute(&mut *$tx)
            .await
            .map_err(map_err)?;
        }
    }};
}

/// Brings a SQLite database up to [`SCHEMA_VERSION`]; returns the version it is at.
pub(crate) async fn migrate_sqlite(pool: &SqlitePool, policy: Migrate) -> Result<i64> {
    // IMMEDIATE takes the write lock up front, so two processes opening the same new
    // file cannot both read version 0 and both apply migration 1.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    apply_pending!(tx, SQLITE, policy);
    tx.commit().await.map_err(map_err)?;
    Ok(SCHEMA_VERSION)
}

/// Brings a PostgreSQL database (the first schema on the search path) up to
/// [`SCHEMA_VERSION`]; returns the version it is at.
pub(crate) async fn migrate_postgres(pool: &PgPool, policy: Migrate) -> Result<i64> {
    let mut tx = pool.begin().await.map_err(map_err)?;
    // Concurrent `CREATE TABLE IF NOT EXISTS` can still fail in PostgreSQL, so take
    // the lock before touching anything; it is released at commit or rollback.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    apply_pending!(tx, POSTGRES, policy);
    tx.commit().await.map_err(map_err)?;
    Ok(SCHEMA_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_lists_are_ordered_and_complete() {
        for list in [SQLITE, POSTGRES] {
            let versions: Vec<i64> = list.iter().map(|m| m.version).collect();
            let expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
            assert_eq!(versions, expected);
        }
    }
}
