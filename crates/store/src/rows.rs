//! Row decoding shared by both backends. Every read goes through `try_get` and
//! checked conversions, so bad data becomes [`StoreError::Corrupt`], never a panic.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{
    IssuedCert, Result, RevocationMark, RevokedEntry, RevokedRow, StoreError, User, count,
    from_secs,
};

/// Reads one column, naming it in the error.
fn get<'r, R, T>(row: &'r R, column: &'static str) -> Result<T>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column)
        .map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// Reads a Unix-seconds column as a time.
fn get_time<'r, R>(row: &'r R, column: &'static str) -> Result<time::OffsetDateTime>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    from_secs(column, get(row, column)?)
}

/// Reads a nullable Unix-seconds column as a time.
fn get_opt_time<'r, R>(row: &'r R, column: &'static str) -> Result<Option<time::OffsetDateTime>>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    get::<R, Option<i64>>(row, column)?
        .map(|s| from_secs(column, s))
        .transpose()
}

/// Builds a [`User`] from a row with the `user_columns!()` columns.
pub(crate) fn user_from_row<'r, R>(row: &'r R) -> Result<User>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(User {
        username: get(row, "username")?,
        password_hash: get(row, "password_hash")?,
        disabled: get(row, "disabled")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
        account_id: get(row, "account_id")?,
    })
}

/// Builds an [`IssuedCert`] from a row with the `cert_columns!()` columns.
pub(crate) fn cert_from_row<'r, R>(row: &'r R) -> Result<IssuedCert>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(IssuedCert {
        serial: get(row, "serial")?,
        username: get(row, "username")?,
        subject: get(row, "subject")?,
        auth_method: get(row, "auth_method")?,
        retriever: get(row, "retriever")?,
        spki_sha256: get(row, "spki_sha256")?,
        not_before: get_time(row, "not_before")?,
        not_after: get_time(row, "not_after")?,
        issued_at: get_time(row, "issued_at")?,
        client_addr: get(row, "client_addr")?,
        der: get(row, "der")?,
        revoked_at: get_opt_time(row, "revoked_at")?,
        revocation_reason: get(row, "revocation_reason")?,
        account_id: get(row, "account_id")?,
        parent_serial: get(row, "parent_serial")?,
        issuer_key_id: get(row, "issuer_key_id")?,
    })
}

/// Reads the `account, account_disabled` columns (both NULL without an account).
pub(crate) fn account_from_row<'r, R>(row: &'r R) -> Result<Option<crate::Account>>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let Some(username) = get::<R, Option<String>>(row, "account")? else {
        return Ok(None);
    };
    Ok(Some(crate::Account {
        username,
        disabled: get(row, "account_disabled")?,
    }))
}

/// Builds a [`RevokedEntry`] from a row with `serial, revoked_at, revocation_reason`.
pub(crate) fn revoked_from_row<'r, R>(row: &'r R) -> Result<RevokedEntry>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
{
    let revoked = revoked_row(row)?;
    Ok(RevokedEntry {
        serial: get(row, "serial")?,
        revoked_at: revoked
            .revoked_at
            .ok_or_else(|| StoreError::Corrupt("column revoked_at: NULL".into()))?,
        reason: revoked.reason,
        issuer_key_id: get(row, "issuer_key_id")?,
    })
}

/// Reads the revocation columns of a certificate row.
pub(crate) fn revoked_row<'r, R>(row: &'r R) -> Result<RevokedRow>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(RevokedRow {
        revoked_at: get_opt_time(row, "revoked_at")?,
        reason: get(row, "revocation_reason")?,
    })
}

/// Builds [`crate::LoginFailures`] from a row with `failures, last_failure`.
pub(crate) fn login_failures_from_row<'r, R>(row: &'r R) -> Result<crate::LoginFailures>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let failures: i64 = get(row, "failures")?;
    Ok(crate::LoginFailures {
        failures: u32::try_from(failures)
            .map_err(|_| StoreError::Corrupt(format!("column failures: {failures}")))?,
        last: get_time(row, "last_failure")?,
    })
}

/// Builds a [`RevocationMark`] from the `n, latest` row of its query.
pub(crate) fn mark_from_row<'r, R>(row: &'r R) -> Result<RevocationMark>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(RevocationMark {
        count: count(get(row, "n")?)?,
        latest: get(row, "latest")?,
    })
}

/// Reads one applied migration: (version, description, applied_at in Unix seconds).
pub(crate) fn applied_from_row<'r, R>(row: &'r R) -> Result<(i64, String, i64)>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok((
        get(row, "version")?,
        get(row, "description")?,
        get(row, "applied_at")?,
    ))
}
