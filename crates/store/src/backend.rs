//! The `Store` methods, written once for both backends. sqlx binds `$N`
//! placeholders on SQLite as on PostgreSQL, so the SQL is shared; what differs is
//! passed in: which pool serves reads and which writes (SQLite keeps one writer
//! connection so that writes queue instead of meeting SQLite's busy lock), and the
//! collation that makes user listings bytewise on both.

/// A user by name, ignoring ASCII case: `$1` the name.
pub(crate) const USER_BY_NAME: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE lower(username) = lower($1)"
);

/// A certificate record by serial (`$1`, lower case), then its user's account as
/// `account, account_disabled` (both NULL without one). Inside the subqueries
/// `username` is the users table's own column.
pub(crate) const CERT_WITH_ACCOUNT: &str = concat!(
    "SELECT ",
    cert_columns!(),
    ", (SELECT username FROM users WHERE lower(username) = lower(certificates.username)) \
     AS account, \
     (SELECT disabled FROM users WHERE lower(username) = lower(certificates.username)) \
     AS account_disabled FROM certificates WHERE serial = $1"
);

/// The INSERT of one certificate record, `$1`..`$13` in `cert_columns!()` order.
pub(crate) const INSERT_CERT: &str = concat!(
    "INSERT INTO certificates (",
    cert_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
);

/// The INSERT of one certificate record, its values bound: `$c` an [`IssuedCert`],
/// `$serial` its serial in lower case.
macro_rules! insert_issued_query {
    ($c:expr, $serial:expr) => {
        sqlx::query($crate::backend::INSERT_CERT)
            .bind($serial)
            .bind(&$c.username)
            .bind(&$c.subject)
            .bind(&$c.auth_method)
            .bind(&$c.retriever)
            .bind(&$c.spki_sha256)
            .bind($crate::to_secs($c.not_before))
            .bind($crate::to_secs($c.not_after))
            .bind($crate::to_secs($c.issued_at))
            .bind(&$c.client_addr)
            .bind(&$c.der)
            .bind($c.revoked_at.map($crate::to_secs))
            .bind($c.revocation_reason)
    };
}
pub(crate) use insert_issued_query;

/// The error of a failed certificate INSERT: a clash of serials is told apart.
pub(crate) fn insert_issued_err(e: sqlx::Error, serial: &str) -> crate::StoreError {
    if crate::is_unique_violation(&e) {
        crate::StoreError::DuplicateSerial(serial.to_string())
    } else {
        crate::map_err(e)
    }
}

/// Implements [`crate::Store`] for a backend struct with the named pool fields and
/// inherent `close_pools`, `insert_issued`, `find_user` and
/// `find_issued_with_account` methods (the operations of every issuance, which each
/// backend runs its own fastest way).
macro_rules! impl_store {
    ($store:ty, reads = $reads:ident, writes = $writes:ident, users_order = $users_order:literal) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn add_user(&self, u: &User) -> Result<()> {
                sqlx::query(concat!(
                    "INSERT INTO users (",
                    user_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5)"
                ))
                .bind(&u.username)
                .bind(&u.password_hash)
                .bind(u.disabled)
                .bind(to_secs(u.created_at))
                .bind(to_secs(u.updated_at))
                .execute(&self.$writes)
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::UserExists(u.username.clone())
                    } else {
                        map_err(e)
                    }
                })?;
                Ok(())
            }

            async fn set_password(
                &self,
                username: &str,
                hash: &str,
                now: OffsetDateTime,
            ) -> Result<()> {
                let r = sqlx::query(
                    "UPDATE users SET password_hash = $1, updated_at = $2 WHERE lower(username) = lower($3)",
                )
                .bind(hash)
                .bind(to_secs(now))
                .bind(username)
                .execute(&self.$writes)
                .await
                .map_err(map_err)?;
                found(r.rows_affected(), username)
            }

            async fn set_disabled(
                &self,
                username: &str,
                disabled: bool,
                now: OffsetDateTime,
            ) -> Result<()> {
                let r = sqlx::query(
                    "UPDATE users SET disabled = $1, updated_at = $2 WHERE lower(username) = lower($3)",
                )
                .bind(disabled)
                .bind(to_secs(now))
                .bind(username)
                .execute(&self.$writes)
                .await
                .map_err(map_err)?;
                found(r.rows_affected(), username)
            }

            async fn remove_user(&self, username: &str) -> Result<()> {
                let r = sqlx::query("DELETE FROM users WHERE lower(username) = lower($1)")
                    .bind(username)
                    .execute(&self.$writes)
                    .await
                    .map_err(map_err)?;
                found(r.rows_affected(), username)
            }

            async fn get_user(&self, username: &str) -> Result<Option<User>> {
                self.find_user(username).await
            }

            async fn list_users(&self) -> Result<Vec<User>> {
                sqlx::query(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users ORDER BY ",
                    $users_order
                ))
                .fetch_all(&self.$reads)
                .await
                .map_err(map_err)?
                .iter()
                .map(user_from_row)
                .collect()
            }

            async fn record_issued(&self, c: &IssuedCert) -> Result<()> {
                // Durable when this returns (SQLite: WAL + synchronous=FULL, commits
                // grouped; PostgreSQL: synchronous_commit=on).
                self.insert_issued(c).await
            }

            async fn get_issued(&self, serial: &str) -> Result<Option<IssuedCert>> {
                sqlx::query(concat!(
                    "SELECT ",
                    cert_columns!(),
                    " FROM certificates WHERE serial = $1"
                ))
                .bind(serial.to_ascii_lowercase())
                .fetch_optional(&self.$reads)
                .await
                .map_err(map_err)?
                .map(|r| cert_from_row(&r))
                .transpose()
            }

            async fn get_issued_with_account(
                &self,
                serial: &str,
            ) -> Result<Option<(IssuedCert, Option<$crate::Account>)>> {
                self.find_issued_with_account(serial).await
            }

            async fn list_issued(&self, filter: &IssuedFilter) -> Result<Vec<IssuedCert>> {
                let (sql, args) = list_issued_sql(filter);
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for a in args {
                    query = match a {
                        Arg::Text(t) => query.bind(t),
                        Arg::Int(i) => query.bind(i),
                    };
                }
                query
                    .fetch_all(&self.$reads)
                    .await
                    .map_err(map_err)?
                    .iter()
                    .map(cert_from_row)
                    .collect()
            }

            async fn count_issued(&self) -> Result<u64> {
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM certificates")
                    .fetch_one(&self.$reads)
                    .await
                    .and_then(|r| r.try_get("n"))
                    .map_err(map_err)?;
                count(n)
            }

            async fn revoke(
                &self,
                serial: &str,
                at: OffsetDateTime,
                reason: i32,
            ) -> Result<RevokeOutcome> {
                let serial = serial.to_ascii_lowercase();
                // One statement, so that two admins revoking at once cannot both "win".
                let r = sqlx::query(
                    "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
                     WHERE serial = $3 AND revoked_at IS NULL",
                )
                .bind(to_secs(at))
                .bind(reason)
                .bind(&serial)
                .execute(&self.$writes)
                .await
                .map_err(map_err)?;
                if r.rows_affected() > 0 {
                    return Ok(RevokeOutcome::Revoked);
                }
                let row = sqlx::query(
                    "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = $1",
                )
                .bind(&serial)
                .fetch_optional(&self.$writes)
                .await
                .map_err(map_err)?;
                already_revoked(row.as_ref().map(revoked_row).transpose()?)
            }

            async fn revoke_user(
                &self,
                username: &str,
                at: OffsetDateTime,
                reason: i32,
            ) -> Result<u64> {
                let r = sqlx::query(
                    "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
                     WHERE lower(username) = lower($3) AND revoked_at IS NULL AND not_after > $4",
                )
                .bind(to_secs(at))
                .bind(reason)
                .bind(username)
                .bind(to_secs(at))
                .execute(&self.$writes)
                .await
                .map_err(map_err)?;
                Ok(r.rows_affected())
            }

            async fn revoked_unexpired(&self, now: OffsetDateTime) -> Result<Vec<RevokedEntry>> {
                sqlx::query(
                    "SELECT serial, revoked_at, revocation_reason FROM certificates \
                     WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY serial",
                )
                .bind(to_secs(now))
                .fetch_all(&self.$reads)
                .await
                .map_err(map_err)?
                .iter()
                .map(revoked_from_row)
                .collect()
            }

            async fn revocation_mark(&self) -> Result<RevocationMark> {
                let row = sqlx::query(REVOCATION_MARK)
                    .fetch_one(&self.$reads)
                    .await
                    .map_err(map_err)?;
                mark_from_row(&row)
            }

            async fn next_crl_number(&self) -> Result<u64> {
                // One UPDATE ... RETURNING: its write lock (SQLite) or row lock (PostgreSQL)
                // serialises concurrent instances.
                let n: i64 = sqlx::query(NEXT_CRL_NUMBER)
                    .fetch_one(&self.$writes)
                    .await
                    .and_then(|r| r.try_get("value"))
                    .map_err(map_err)?;
                count(n)
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.$writes)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn schema_version(&self) -> Result<i64> {
                sqlx::query(migrations::SELECT_VERSION)
                    .fetch_one(&self.$reads)
                    .await
                    .and_then(|r| r.try_get("v"))
                    .map_err(map_err)
            }

            async fn close(&self) {
                self.close_pools().await;
            }
        }
    };
}

pub(crate) use impl_store;
