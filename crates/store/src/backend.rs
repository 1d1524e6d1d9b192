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

/// A certificate record by serial (`$1`, lower case), then the account it was
/// issued to as `account, account_disabled` (both NULL when that account is gone,
/// whoever holds its name now). Inside the subqueries `account_id` is the users
/// table's own column.
pub(crate) const CERT_WITH_ACCOUNT: &str = concat!(
    "SELECT ",
    cert_columns!(),
    ", (SELECT username FROM users WHERE account_id = certificates.account_id) AS account, \
     (SELECT disabled FROM users WHERE account_id = certificates.account_id) \
     AS account_disabled FROM certificates WHERE serial = $1"
);

/// The INSERT of one certificate record, `$1`..`$15` in `cert_columns!()` order.
pub(crate) const INSERT_CERT: &str = concat!(
    "INSERT INTO certificates (",
    cert_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
);

/// Counts a failed-password attempt for `$1` at `$2` (Unix seconds), unless the
/// name is locked: `$3` the policy's period in seconds, `$4` its failure limit.
/// Failures older than the period start the count again. No row comes back when
/// the name is locked (the update's `WHERE` fails), so the check and the count are
/// one atomic statement on both backends.
pub(crate) const COUNT_LOGIN_ATTEMPT: &str = "INSERT INTO login_failures \
     (name, failures, last_failure) VALUES ($1, 1, $2) \
     ON CONFLICT (name) DO UPDATE SET \
       failures = CASE WHEN login_failures.last_failure + $3 <= $2 THEN 1 \
                  ELSE login_failures.failures + 1 END, \
       last_failure = $2 \
     WHERE login_failures.failures < $4 OR login_failures.last_failure + $3 <= $2 \
     RETURNING failures";

/// The failures recorded for the name `$1`.
pub(crate) const LOGIN_FAILURES: &str =
    "SELECT failures, last_failure FROM login_failures WHERE name = $1";

/// A row if the key with SPKI hash `$1` was reported compromised; checked in the
/// transaction of every certificate INSERT.
pub(crate) const KEY_COMPROMISED: &str = "SELECT 1 AS compromised FROM certificates \
     WHERE spki_sha256 = $1 AND revocation_reason = 1 LIMIT 1";

/// The revocation time of the certificate `$1` that a renewal renews; checked in the
/// transaction of the renewal's INSERT.
pub(crate) const PARENT_STATE: &str = "SELECT revoked_at FROM certificates WHERE serial = $1";

/// Revokes (at `$1`, reason `$2`) every unexpired, unrevoked certificate renewed
/// from `$3`, directly or through other renewals; when `$4` is true (keyCompromise)
/// also every certificate for the key with SPKI hash `$5` and their renewals.
/// `UNION` (not `ALL`) ends the recursion even on a cycle in damaged data.
pub(crate) const REVOKE_LINEAGE: &str = "WITH RECURSIVE lineage(serial) AS ( \
         SELECT serial FROM certificates WHERE serial = $3 OR ($4 AND spki_sha256 = $5) \
         UNION \
         SELECT c.serial FROM certificates c JOIN lineage l ON c.parent_serial = l.serial \
     ) \
     UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
     WHERE serial IN (SELECT serial FROM lineage) AND revoked_at IS NULL AND not_after > $1";

/// Times [`REVOKE_LINEAGE`] runs at most in one revocation: it runs again while it
/// finds more, because on PostgreSQL a renewal committed while it ran (its parent
/// locked `FOR SHARE`) is only seen by the next statement. Two runs suffice; more
/// only guard against a pathological interleaving.
pub(crate) const LINEAGE_PASSES: usize = 8;

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
            .bind(&$c.account_id)
            .bind(&$c.parent_serial)
            .bind(&$c.issuer_key_id)
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
/// inherent `close_pools`, `insert_issued`, `find_user`, `find_login_failures` and
/// `find_issued_with_account` methods (the operations of every issuance, which each
/// backend runs its own fastest way). `begin_write` starts a transaction that
/// writes; `lock_row` is appended to a SELECT of a row the transaction will update;
/// `lock_key`, if any, is a statement taking `$1` (an SPKI hash) that waits for
/// every INSERT in progress for that key (PostgreSQL's advisory lock; SQLite's
/// write transactions are serial anyway).
macro_rules! impl_store {
    ($store:ty, reads = $reads:ident, writes = $writes:ident, users_order = $users_order:literal,
     users_order_name = $users_order_name:literal,
     begin_write = $begin_write:literal, lock_row = $lock_row:literal,
     lock_key = $lock_key:expr) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn add_user(&self, u: &User) -> Result<()> {
                sqlx::query(concat!(
                    "INSERT INTO users (",
                    user_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6)"
                ))
                .bind(&u.username)
                .bind(&u.password_hash)
                .bind(u.disabled)
                .bind(to_secs(u.created_at))
                .bind(to_secs(u.updated_at))
                .bind(&u.account_id)
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

            async fn upgrade_password(
                &self,
                username: &str,
                old: &str,
                new: &str,
                now: OffsetDateTime,
            ) -> Result<bool> {
                let r = sqlx::query(
                    "UPDATE users SET password_hash = $1, updated_at = $2 \
                     WHERE lower(username) = lower($3) AND password_hash = $4",
                )
                .bind(new)
                .bind(to_secs(now))
                .bind(username)
                .bind(old)
                .execute(&self.$writes)
                .await
                .map_err(map_err)?;
                Ok(r.rows_affected() > 0)
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

            async fn set_account_id(
                &self,
                username: &str,
                account_id: &str,
                now: OffsetDateTime,
            ) -> Result<()> {
                let r = sqlx::query(
                    "UPDATE users SET account_id = $1, updated_at = $2 WHERE lower(username) = lower($3)",
                )
                .bind(account_id)
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
                let compromise = reason == $crate::REASON_KEY_COMPROMISE;
                // A serial's key never changes: read it before any lock, so that the
                // key lock is taken before any row lock (renewals take them in that
                // order too, which rules out a deadlock between the two).
                let spki: Option<String> =
                    sqlx::query_scalar("SELECT spki_sha256 FROM certificates WHERE serial = $1")
                        .bind(&serial)
                        .fetch_optional(&self.$writes)
                        .await
                        .map_err(map_err)?;
                let Some(spki) = spki else {
                    return Ok(RevokeOutcome::NotFound);
                };
                let mut tx = self.$writes.begin_with($begin_write).await.map_err(map_err)?;
                if compromise && let Some(lock) = $lock_key {
                    sqlx::query(lock)
                        .bind(&spki)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                let row = sqlx::query(concat!(
                    "SELECT revoked_at, revocation_reason FROM certificates WHERE serial = $1",
                    $lock_row
                ))
                .bind(&serial)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let current = row.as_ref().map(revoked_row).transpose()?;
                match &current {
                    Some(c) if c.revoked_at.is_none() => {
                        sqlx::query(
                            "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
                             WHERE serial = $3",
                        )
                        .bind(to_secs(at))
                        .bind(reason)
                        .bind(&serial)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    // Learning later that the key was compromised is news: the key
                    // is refused from now on and its other certificates go too. The
                    // revocation time stays the first one.
                    Some(c) if compromise && c.reason != Some(reason) => {
                        sqlx::query(
                            "UPDATE certificates SET revocation_reason = $1 WHERE serial = $2",
                        )
                        .bind(reason)
                        .bind(&serial)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    }
                    _ => {
                        tx.rollback().await.map_err(map_err)?;
                        return already_revoked(current);
                    }
                }
                let mut also = 0;
                for _ in 0..$crate::backend::LINEAGE_PASSES {
                    let n = sqlx::query($crate::backend::REVOKE_LINEAGE)
                        .bind(to_secs(at))
                        .bind(reason)
                        .bind(&serial)
                        .bind(compromise)
                        .bind(&spki)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                    also += n;
                    if n == 0 {
                        break;
                    }
                }
                tx.commit().await.map_err(map_err)?;
                Ok(RevokeOutcome::Revoked { also })
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
                    "SELECT serial, revoked_at, revocation_reason, issuer_key_id FROM certificates \
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

            async fn attribute_issuer(&self, key_id: &str) -> Result<u64> {
                let r = sqlx::query(
                    "UPDATE certificates SET issuer_key_id = $1 WHERE issuer_key_id IS NULL",
                )
                .bind(key_id)
                .execute(&self.$writes)
                .await
                .map_err(map_err)?;
                Ok(r.rows_affected())
            }

            async fn unexpired_by_issuer(
                &self,
                now: OffsetDateTime,
            ) -> Result<Vec<$crate::IssuerCount>> {
                let rows = sqlx::query(
                    "SELECT issuer_key_id, COUNT(*) AS n, MAX(not_after) AS last \
                     FROM certificates WHERE not_after > $1 \
                     GROUP BY issuer_key_id ORDER BY issuer_key_id IS NOT NULL, issuer_key_id",
                )
                .bind(to_secs(now))
                .fetch_all(&self.$reads)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|row| {
                        let n: i64 = sqlx::Row::try_get(row, "n").map_err(map_err)?;
                        let last: i64 = sqlx::Row::try_get(row, "last").map_err(map_err)?;
                        Ok($crate::IssuerCount {
                            key_id: sqlx::Row::try_get(row, "issuer_key_id").map_err(map_err)?,
                            unexpired: u64::try_from(n).unwrap_or(0),
                            last_not_after: $crate::from_secs("not_after", last)?,
                        })
                    })
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

            async fn count_login_attempt(
                &self,
                name: &str,
                now: OffsetDateTime,
                policy: &$crate::LockoutPolicy,
            ) -> Result<$crate::LoginAttempt> {
                let counted: Option<i64> = sqlx::query_scalar($crate::backend::COUNT_LOGIN_ATTEMPT)
                    .bind(name)
                    .bind(to_secs(now))
                    .bind(policy.period.whole_seconds())
                    .bind(i64::from(policy.max_failures))
                    .fetch_optional(&self.$writes)
                    .await
                    .map_err(map_err)?;
                if counted.is_some() {
                    return Ok($crate::LoginAttempt::Counted);
                }
                // Locked: say until when (the row cannot vanish but by a sweep or an
                // unlock, and then the name is not locked any more).
                Ok(match self.login_failures(name).await? {
                    Some(f) => $crate::LoginAttempt::Locked(f.last + policy.period),
                    None => $crate::LoginAttempt::Locked(now),
                })
            }

            async fn forgive_login_attempt(&self, name: &str) -> Result<()> {
                sqlx::query(
                    "UPDATE login_failures SET failures = failures - 1 \
                     WHERE name = $1 AND failures > 0",
                )
                .bind(name)
                .execute(&self.$writes)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn clear_login_failures(&self, name: &str) -> Result<bool> {
                let r = sqlx::query("DELETE FROM login_failures WHERE name = $1")
                    .bind(name)
                    .execute(&self.$writes)
                    .await
                    .map_err(map_err)?;
                Ok(r.rows_affected() > 0)
            }

            async fn login_failures(&self, name: &str) -> Result<Option<$crate::LoginFailures>> {
                self.find_login_failures(name).await
            }

            async fn list_login_failures(&self) -> Result<Vec<(String, $crate::LoginFailures)>> {
                sqlx::query(concat!(
                    "SELECT name, failures, last_failure FROM login_failures ORDER BY ",
                    $users_order_name
                ))
                .fetch_all(&self.$reads)
                .await
                .map_err(map_err)?
                .iter()
                .map(|r| {
                    let name: String = r.try_get("name").map_err(map_err)?;
                    Ok((name, $crate::rows::login_failures_from_row(r)?))
                })
                .collect()
            }

            async fn sweep_login_failures(&self, before: OffsetDateTime) -> Result<u64> {
                let r = sqlx::query("DELETE FROM login_failures WHERE last_failure < $1")
                    .bind(to_secs(before))
                    .execute(&self.$writes)
                    .await
                    .map_err(map_err)?;
                Ok(r.rows_affected())
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
