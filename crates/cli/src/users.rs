//! `onlineca user ...`: the accounts that may get certificates by password.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use onlineca_core::crl::Reason;
use onlineca_core::password;
use onlineca_server::audit::{CliAudit, Event};
use onlineca_store::{IssuedFilter, LockoutPolicy, StatusFilter, Store, StoreError, User};
use time::OffsetDateTime;

/// Shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 8;

/// `onlineca user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (password from a prompt, or stdin with --password-stdin).
    #[command(after_long_help = crate::help::USER_ADD)]
    Add {
        /// The username: it becomes the CN of the user's certificates.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password.
    #[command(after_long_help = crate::help::USER_PASSWD)]
    Passwd {
        /// The username.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user (certificates already issued stay valid until they expire,
    /// unless --revoke).
    #[command(after_long_help = crate::help::USER_REMOVE)]
    Remove {
        /// The username.
        name: String,
        /// Also revoke the user's unexpired certificates (reason cessationOfOperation).
        #[arg(long)]
        revoke: bool,
    },
    /// Disable a user: no certificate by password, retriever or renewal until enabled.
    #[command(after_long_help = crate::help::USER_DISABLE)]
    Disable {
        /// The username.
        name: String,
    },
    /// Enable a disabled user.
    #[command(after_long_help = crate::help::USER_ENABLE)]
    Enable {
        /// The username.
        name: String,
    },
    /// List users, with those locked out by failed passwords.
    #[command(after_long_help = crate::help::USER_LIST)]
    List,
    /// Import users from an Apache htpasswd file (bcrypt, SHA-512/256-crypt,
    /// APR1-MD5); each hash becomes argon2id at the user's next login.
    #[command(after_long_help = crate::help::USER_IMPORT)]
    Import {
        /// The htpasswd file (`name:hash` lines).
        #[arg(long, value_name = "FILE")]
        htpasswd: std::path::PathBuf,
        /// Check the file and say what would be imported; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check one user's password against the local store, then the [ldap] directory,
    /// without issuing anything; says which source answered.
    #[command(after_long_help = crate::help::USER_TEST)]
    Test {
        /// The username.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Clear a lockout after failed passwords (shared by every instance).
    #[command(after_long_help = crate::help::USER_UNLOCK)]
    Unlock {
        /// The username (any spelling; locked names need not be accounts).
        name: String,
    },
}

fn read_password(from_stdin: bool) -> Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let (what, instead) = ("the password", "--password-stdin");
        let a = crate::prompt::secret("Password: ", what, instead)?;
        let b = crate::prompt::secret("Password (again): ", what, instead)?;
        if a != b {
            bail!("the passwords do not match");
        }
        a
    };
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        bail!("password too short: at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok(pw)
}

/// Runs a user subcommand against the store.
pub async fn run(
    cmd: UserCommand,
    store: &dyn Store,
    template: &onlineca_core::SubjectTemplate,
    lockout: &LockoutPolicy,
    ldap: Option<&onlineca_server::ldap::LdapSection>,
    audit: &mut CliAudit,
) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    match cmd {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            // The name must fit the subject template, not merely be a valid name.
            template.render(&name)?;
            if store.get_user(&name).await?.is_some() {
                bail!("user {name:?} already exists (use 'user passwd' to change the password)");
            }
            let pw = read_password(password_stdin)?;
            let hash = tokio::task::spawn_blocking(move || password::hash(&pw)).await??;
            let user = User::new(name.clone(), hash, now)?;
            audit.ready()?;
            match store.add_user(&user).await {
                Ok(()) => {
                    eprintln!("added user {name:?}");
                    audit.record(now, &Event::UserAdded { user: &name })?;
                }
                Err(StoreError::UserExists(_)) => bail!("user {name:?} already exists"),
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            if store.get_user(&name).await?.is_none() {
                bail!("no user {name:?}");
            }
            let pw = read_password(password_stdin)?;
            let hash = tokio::task::spawn_blocking(move || password::hash(&pw)).await??;
            audit.ready()?;
            store.set_password(&name, &hash, now).await?;
            eprintln!("password of {name:?} changed");
            audit.record(now, &Event::PasswordChanged { user: &name })?;
        }
        UserCommand::Remove { name, revoke } => {
            // Certificates are recorded under the stored spelling of the name.
            let Some(user) = store.get_user(&name).await? else {
                bail!("no user {name:?}");
            };
            let name = user.username;
            audit.ready()?;
            let revoked = if revoke {
                store
                    .revoke_user(&name, now, Reason::CessationOfOperation.code())
                    .await?
            } else {
                0
            };
            match store.remove_user(&name).await {
                Ok(()) => {}
                Err(StoreError::UserNotFound(_)) => bail!("no user {name:?}"),
                Err(e) => return Err(e.into()),
            }
            if revoked > 0 {
                audit.record(
                    now,
                    &Event::Revoked {
                        serial: None,
                        user: &name,
                        reason: Reason::CessationOfOperation.name(),
                        count: revoked,
                    },
                )?;
            }
            audit.record(
                now,
                &Event::UserRemoved {
                    user: &name,
                    revoked,
                },
            )?;
            let valid = valid_count(store, &name, now).await?;
            if revoke {
                eprintln!("removed user {name:?} and revoked {revoked} certificate(s)");
            } else if valid > 0 {
                eprintln!(
                    "removed user {name:?}; {valid} certificate(s) remain valid until they expire \
                     (revoke them with: onlineca cert revoke --user {name}, or use user remove --revoke)"
                );
            } else {
                eprintln!("removed user {name:?}; no valid certificates remain");
            }
        }
        UserCommand::Disable { name } => {
            audit.ready()?;
            match store.set_disabled(&name, true, now).await {
                Ok(()) => {}
                // A directory user who never logged in has no shadow account yet:
                // record one, disabled, as the local marker that refuses them.
                Err(StoreError::UserNotFound(_)) if ldap.is_some() => {
                    template.render(&name)?;
                    let mut marker = User::new(name.clone(), password::DIRECTORY_MARKER, now)?;
                    marker.disabled = true;
                    // Bound to no entry yet: the first login binds it.
                    marker.account_id = format!("ldap:unbound-{}", marker.account_id);
                    store.add_user(&marker).await?;
                    audit.record(
                        now,
                        &Event::UserDisabled {
                            user: &name,
                            directory_marker: true,
                        },
                    )?;
                    eprintln!(
                        "no local account {name:?}: recorded a disabled marker, so the \
                         directory user {name:?} gets no certificate until `user enable`"
                    );
                    return Ok(());
                }
                Err(StoreError::UserNotFound(_)) => bail!("no user {name:?}"),
                Err(e) => return Err(e.into()),
            }
            let name = store.get_user(&name).await?.map_or(name, |u| u.username);
            audit.record(
                now,
                &Event::UserDisabled {
                    user: &name,
                    directory_marker: false,
                },
            )?;
            let valid = valid_count(store, &name, now).await?;
            eprintln!(
                "disabled user {name:?}: no new certificates by any method; {valid} certificate(s) \
                 stay valid until they expire unless revoked (onlineca cert revoke --user {name})"
            );
        }
        UserCommand::Enable { name } => {
            audit.ready()?;
            match store.set_disabled(&name, false, now).await {
                Ok(()) => {
                    eprintln!("enabled user {name:?}");
                    audit.record(now, &Event::UserEnabled { user: &name })?;
                }
                Err(StoreError::UserNotFound(_)) => bail!("no user {name:?}"),
                Err(e) => return Err(e.into()),
            }
        }
        UserCommand::List => {
            let users = store.list_users().await?;
            let mut locked: std::collections::BTreeMap<String, OffsetDateTime> = store
                .list_login_failures()
                .await?
                .into_iter()
                .filter_map(|(name, f)| Some((name, f.locked_until(lockout, now)?)))
                .collect();
            println!(
                "{:<32} {:<9} {:<13} {:<25} LOCKED UNTIL",
                "USERNAME", "STATUS", "PASSWORD", "CREATED"
            );
            for u in users {
                let until = locked.remove(&u.username.to_ascii_lowercase());
                let status = match (u.disabled, until) {
                    (true, _) => "disabled",
                    (false, Some(_)) => "locked",
                    (false, None) => "active",
                };
                println!(
                    "{:<32} {:<9} {:<13} {:<25} {}",
                    u.username,
                    status,
                    password::Scheme::of(&u.password_hash).name(),
                    rfc3339(u.created_at),
                    until.map(rfc3339).unwrap_or_else(|| "-".into())
                );
            }
            if !locked.is_empty() {
                // Names without accounts draw failures too (guessing, typos); they
                // are locked alike, so that a lockout reveals no account.
                eprintln!(
                    "{} name(s) without an account are locked out too (onlineca user unlock NAME clears one)",
                    locked.len()
                );
            }
        }
        UserCommand::Import { htpasswd, dry_run } => {
            import_htpasswd(store, template, &htpasswd, dry_run, now, audit).await?;
        }
        UserCommand::Test {
            name,
            password_stdin,
        } => test_password(store, ldap, &name, password_stdin).await?,
        UserCommand::Unlock { name } => {
            audit.ready()?;
            let had_failures = store
                .clear_login_failures(&name.to_ascii_lowercase())
                .await?;
            audit.record(
                now,
                &Event::UserUnlocked {
                    user: &name,
                    had_failures,
                },
            )?;
            if had_failures {
                eprintln!(
                    "unlocked {name:?}: its failed passwords are forgotten, on every instance"
                );
            } else {
                eprintln!("{name:?} had no failed passwords recorded; nothing changed");
            }
        }
    }
    Ok(())
}

/// One user of an htpasswd file, checked.
struct ImportLine {
    line: usize,
    name: String,
    hash: String,
}

/// `user import --htpasswd`: the whole file is checked first, and nothing is
/// imported unless every line is fine, so that a bad file can be fixed and imported
/// again without leftovers.
async fn import_htpasswd(
    store: &dyn Store,
    template: &onlineca_core::SubjectTemplate,
    path: &std::path::Path,
    dry_run: bool,
    now: OffsetDateTime,
    audit: &mut CliAudit,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut ok = Vec::new();
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let entry = raw.trim_end_matches('\r');
        if entry.trim().is_empty() || entry.trim_start().starts_with('#') {
            continue;
        }
        // Never echo the line: it holds a hash (or, refused, perhaps a password).
        let Some((name, hash)) = entry.split_once(':') else {
            problems.push(format!("line {line}: no ':' between name and hash"));
            continue;
        };
        // htpasswd files written by other tools may carry fields after the hash.
        let hash = hash.split(':').next().unwrap_or_default();
        if let Err(e) = template.render(name) {
            problems.push(format!("line {line}: username {name:?}: {e}"));
            continue;
        }
        if let Some(why) = password::import_problem(hash) {
            problems.push(format!("line {line}: user {name:?}: {why}"));
            continue;
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            problems.push(format!("line {line}: user {name:?} appears twice"));
            continue;
        }
        if store.get_user(name).await?.is_some() {
            problems.push(format!("line {line}: user {name:?} already exists"));
            continue;
        }
        ok.push(ImportLine {
            line,
            name: name.to_string(),
            hash: hash.to_string(),
        });
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{}: {p}", path.display());
        }
        bail!(
            "nothing imported: {} line(s) refused; fix or remove them and run again",
            problems.len()
        );
    }
    let mut schemes = std::collections::BTreeMap::<&str, usize>::new();
    for l in &ok {
        *schemes
            .entry(password::Scheme::of(&l.hash).name())
            .or_default() += 1;
    }
    let summary: Vec<String> = schemes.iter().map(|(s, n)| format!("{n} {s}")).collect();
    if dry_run {
        for l in &ok {
            eprintln!(
                "would import {:?} (line {}, {})",
                l.name,
                l.line,
                password::Scheme::of(&l.hash).name()
            );
        }
        eprintln!(
            "dry run: {} user(s) would be imported ({}); nothing changed",
            ok.len(),
            summary.join(", ")
        );
        return Ok(());
    }
    audit.ready()?;
    for (done, l) in ok.iter().enumerate() {
        let added = store
            .add_user(&User::new(l.name.clone(), l.hash.clone(), now)?)
            .await;
        if let Err(e) = added {
            bail!(
                "line {}: user {:?}: {e}; {done} user(s) before it were imported",
                l.line,
                l.name
            );
        }
        let scheme = password::Scheme::of(&l.hash).name();
        audit.record(
            now,
            &Event::UserImported {
                user: &l.name,
                scheme,
            },
        )?;
    }
    eprintln!(
        "imported {} user(s) ({}); each password becomes argon2id at the user's next login \
         (onlineca user list shows which)",
        ok.len(),
        summary.join(", ")
    );
    Ok(())
}

/// `user test`: the local store first (a row with a local hash), else the directory.
/// Counts no failure and creates no shadow account.
async fn test_password(
    store: &dyn Store,
    ldap: Option<&onlineca_server::ldap::LdapSection>,
    name: &str,
    password_stdin: bool,
) -> Result<()> {
    use onlineca_server::ldap::{Directory, LDAP_MARKER, Verdict};
    let user = store.get_user(name).await?;
    let local = user.as_ref().filter(|u| u.password_hash != LDAP_MARKER);
    if local.is_none() && ldap.is_none() {
        bail!("no user {name:?} in the store, and no [ldap] directory is configured");
    }
    let pw = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        crate::prompt::secret("Password: ", "the password", "--password-stdin")?
    };
    if let Some(u) = local {
        let hash = u.password_hash.clone();
        let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash)).await?;
        if !ok {
            bail!("local store: wrong password for {:?}", u.username);
        }
        let state = if u.disabled {
            " (but the account is disabled)"
        } else {
            ""
        };
        println!("local store: password accepted for {:?}{state}", u.username);
        return Ok(());
    }
    let section = ldap.context("no [ldap] directory is configured")?;
    onlineca_core::subject::validate_username(name)?;
    let dir = Directory::new(section)?;
    match dir.authenticate(name, &pw).await {
        Ok(Verdict::Accepted(entry)) => {
            println!(
                "directory: password accepted for {name:?}: entry {} (account {})",
                entry.dn,
                entry.account_id()
            );
            match user {
                Some(u) if u.disabled => println!("shadow account: disabled (refused at login)"),
                Some(u) if u.account_id != entry.account_id() => println!(
                    "shadow account: {} differs: the entry was created again; the next login \
                     makes it a new account",
                    u.account_id
                ),
                Some(_) => println!("shadow account: present, enabled"),
                None => println!("shadow account: none yet (created at the first login)"),
            }
            Ok(())
        }
        Ok(Verdict::Refused(reason)) => bail!("directory: refused {name:?}: {reason}"),
        Err(e) => bail!("directory unavailable: {e}"),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How many of `name`'s certificates are neither revoked nor expired at `now`.
async fn valid_count(store: &dyn Store, name: &str, now: OffsetDateTime) -> Result<usize> {
    let filter = IssuedFilter {
        username: Some(name.to_string()),
        status: Some(StatusFilter::Valid(now)),
        ..Default::default()
    };
    Ok(store.list_issued(&filter).await?.len())
}
