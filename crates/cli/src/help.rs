//! The long help's examples (`--help`; `-h` stays short) and environment variables,
//! one constant per command. A test checks every command has some.

/// `onlineca --help`.
pub const TOP: &str = "\
Examples:
  # A working CA on its embedded store (created on first run, then reused):
  onlineca serve --dir ./onlineca-data
  onlineca user add alice --config ./onlineca-data/onlineca.toml

  # The user's side: trust pinned by the root's fingerprint, then a certificate:
  onlineca trustroots --url https://ca.example.org/onlineca --fingerprint AB:CD:...
  onlineca getcert --url https://ca.example.org/onlineca --user alice

  # Shell completion and the manual page:
  mkdir -p ~/.local/share/bash-completion/completions
  onlineca completions bash > ~/.local/share/bash-completion/completions/onlineca
  onlineca man | man -l -

Environment:
  ONLINECA_CONFIG      the configuration file, for serve, user, cert, retriever and
                       config check when --config is not given
  ONLINECA_URL         the service base URL, for trustroots and getcert (--url)
  ONLINECA_USER        the username, for getcert (--user)
  ONLINECA_LOG_FORMAT  text or json (--log-format)
  RUST_LOG             log filter (default info), for example RUST_LOG=debug
  HOME                 getcert and trustroots keep files in ~/.onlineca by default
";

/// `onlineca init --help`.
pub const INIT: &str = "\
Examples:
  onlineca init --dir /etc/onlineca --hostname ca.example.org --org Example
  onlineca init --dir /etc/onlineca --key-type rsa3072 --cert-lifetime 8h
  # The CA keys encrypted at rest (serve then needs the passphrase too):
  onlineca init --dir /etc/onlineca --encrypt-key --passphrase-file /root/ca.pass
  # A name of your own instead of \"<org> <random suffix>\":
  onlineca init --dir /etc/onlineca --org Example --ca-name \"Example Research\"
  # An existing CA, kept (its key may be encrypted: add --passphrase-file):
  onlineca init --dir /etc/onlineca --import-ca-cert ca.pem --import-ca-key ca.key \\
      --import-ca-chain root.pem
  # The issuing CA key made on a PKCS#11 token (an HSM; here SoftHSM), never in a file;
  # the PIN is the first line of a mode-0600 file (docs/operations.md):
  onlineca init --dir /etc/onlineca --pkcs11-module /usr/lib/softhsm/libsofthsm2.so \\
      --issuing-key-pkcs11 'pkcs11:token=onlineca;object=onlineca-issuing' \\
      --pin-file /etc/onlineca/token.pin
";

/// `onlineca serve --help`.
pub const SERVE: &str = "\
Examples:
  # A CA in ./onlineca-data, created with default settings on first run:
  onlineca serve --dir ./onlineca-data
  # A CA made with `onlineca init`:
  onlineca serve --config /etc/onlineca/onlineca.toml
  ONLINECA_CONFIG=/etc/onlineca/onlineca.toml onlineca serve
  # Another address than the configured one (port 0: any free port):
  onlineca serve --dir ./onlineca-data --listen 127.0.0.1:9443
  # Encrypted CA keys: the passphrase from a file (or asked on the terminal):
  onlineca serve --config /etc/onlineca/onlineca.toml --passphrase-file /run/credentials/ca.pass
";

/// `onlineca user --help`.
pub const USER: &str = "\
Examples:
  onlineca user add alice --config /etc/onlineca/onlineca.toml
  export ONLINECA_CONFIG=/etc/onlineca/onlineca.toml
  printf '%s\\n' \"$PASSWORD\" | onlineca user add alice --password-stdin
  onlineca user list
  onlineca user disable alice
  onlineca user unlock alice
";

/// `onlineca user add --help`.
pub const USER_ADD: &str = "\
Examples:
  onlineca user add alice --config /etc/onlineca/onlineca.toml   # asks twice, no echo
  printf '%s\\n' \"$PASSWORD\" | onlineca user add alice --password-stdin --config ...
";

/// `onlineca user passwd --help`.
pub const USER_PASSWD: &str = "\
Examples:
  onlineca user passwd alice --config /etc/onlineca/onlineca.toml
  printf '%s\\n' \"$PASSWORD\" | onlineca user passwd alice --password-stdin --config ...
";

/// `onlineca user remove --help`.
pub const USER_REMOVE: &str = "\
Examples:
  onlineca user remove alice --config /etc/onlineca/onlineca.toml
  onlineca user remove alice --revoke --config /etc/onlineca/onlineca.toml
";

/// `onlineca user disable --help`.
pub const USER_DISABLE: &str = "\
Examples:
  onlineca user disable alice --config /etc/onlineca/onlineca.toml
";

/// `onlineca user enable --help`.
pub const USER_ENABLE: &str = "\
Examples:
  onlineca user enable alice --config /etc/onlineca/onlineca.toml
";

/// `onlineca user list --help`.
pub const USER_LIST: &str = "\
STATUS is active, disabled, or locked (too many failed passwords; LOCKED UNTIL says
until when). Lockouts are kept in the store: every instance sharing it sees them.
PASSWORD is the scheme of the stored hash: argon2id, or an imported htpasswd scheme
(bcrypt, sha512-crypt, sha256-crypt, apr1-md5) until the user's next login.

Examples:
  onlineca user list --config /etc/onlineca/onlineca.toml
";

/// `onlineca user import --help`.
pub const USER_IMPORT: &str = "\
Takes `name:hash` lines as Apache htpasswd writes them: bcrypt ($2y$, htpasswd -B),
SHA-512-crypt and SHA-256-crypt ($6$, $5$), APR1-MD5 ($apr1$, htpasswd -m). Plain-text,
DES-crypt, {SHA} and MD5-crypt ($1$) lines are refused with their line number. The
whole file is checked first: one bad line and nothing is imported. Each user's hash is
verified with its own scheme at the next login and then replaced by argon2id;
`onlineca user list` shows each user's scheme.

Examples:
  onlineca user import --htpasswd /etc/onlineca/users.htpasswd --dry-run
  onlineca user import --htpasswd /etc/onlineca/users.htpasswd
";

/// `onlineca user unlock --help`.
pub const USER_UNLOCK: &str = "\
Forgets a name's failed passwords at once, for every instance sharing the store.
The lockout otherwise ends by itself ([auth] lockout after the last failure).

Examples:
  onlineca user unlock alice --config /etc/onlineca/onlineca.toml
";

/// `onlineca user test --help`.
pub const USER_TEST: &str = "\
Checks one user's password against the configured sources, the local store first,
then the [ldap] directory, and says which answered. Nothing is issued, no lockout is
counted and no shadow account is created: for operators debugging a directory.

Examples:
  onlineca user test alice --config /etc/onlineca/onlineca.toml
  printf '%s\\n' \"$PASSWORD\" | onlineca user test alice --password-stdin
";

/// `onlineca cert --help`.
pub const CERT: &str = "\
Examples:
  export ONLINECA_CONFIG=/etc/onlineca/onlineca.toml
  onlineca cert list --user alice --valid
  onlineca cert show 3a5f...
  onlineca cert revoke 3a5f... --reason keyCompromise
";

/// `onlineca cert list --help`.
pub const CERT_LIST: &str = "\
Examples:
  onlineca cert list --config /etc/onlineca/onlineca.toml
  onlineca cert list --user alice --valid --config ...
  onlineca cert list --since 24h --json --all --config ...
";

/// `onlineca cert show --help`.
pub const CERT_SHOW: &str = "\
Examples:
  onlineca cert show 3a5f0c... --config /etc/onlineca/onlineca.toml
";

/// `onlineca cert revoke --help`.
pub const CERT_REVOKE: &str = "\
Examples:
  onlineca cert revoke 3a5f0c... --reason keyCompromise --config /etc/onlineca/onlineca.toml
  onlineca cert revoke --user alice --reason affiliationChanged --config ...
";

/// `onlineca crl --help` and `onlineca crl root --help`.
pub const CRL: &str = "\
Examples:
  # Where the root key is kept (nginx's ssl_crl wants a CRL for every CA of the chain):
  onlineca crl root --cert ca/root.pem --key ca/root.key --next-update 90days \\
      --out root-crl.pem
";

/// `onlineca retriever --help` and `onlineca retriever list --help`.
pub const RETRIEVER: &str = "\
Examples:
  onlineca retriever list --config /etc/onlineca/onlineca.toml
";

/// `onlineca trustroots --help`.
pub const TRUSTROOTS: &str = "\
Examples:
  # First fetch, pinned by the root fingerprint the operator publishes
  # (into ~/.onlineca/trustroots unless --dir says otherwise):
  onlineca trustroots --url https://ca.example.org/onlineca --fingerprint AB:CD:...
  # Later refreshes, checked against the directory already there:
  onlineca trustroots --url https://ca.example.org/onlineca
  # Trust on first use, loudly (compare the fingerprints printed):
  onlineca trustroots --url https://ca.example.org/onlineca --bootstrap --dir ./trust
";

/// `onlineca getcert --help`.
pub const GETCERT: &str = "\
Examples:
  # Into ~/.onlineca/alice.pem and ~/.onlineca/alice.key, trusting ~/.onlineca/trustroots:
  onlineca getcert --url https://ca.example.org/onlineca --user alice
  # Other places and forms:
  onlineca getcert --url ... --user alice --cert alice.pem --key alice.key
  onlineca getcert --url ... --user alice --bundle alice-bundle.pem
  onlineca getcert --url ... --user alice --p12 alice.p12 --p12-password-file pw.txt
  # From cron: a new certificate only when the current one has less than 2 hours left:
  printf '%s\\n' \"$PASSWORD\" | onlineca getcert --url ... --user alice --password-stdin \\
      --renew-within 2h
  # Renewal by the current certificate over mutual TLS (no password):
  onlineca getcert --url ... --renew --cert alice.pem --key alice.key
";

/// `onlineca config --help` and `onlineca config check --help`.
pub const CONFIG: &str = "\
Examples:
  onlineca config check --config /etc/onlineca/onlineca.toml
";

/// `onlineca completions --help`.
pub const COMPLETIONS: &str = "\
Examples:
  mkdir -p ~/.local/share/bash-completion/completions
  onlineca completions bash > ~/.local/share/bash-completion/completions/onlineca
  onlineca completions zsh > ~/.zfunc/_onlineca    # with fpath+=(~/.zfunc) in ~/.zshrc
  onlineca completions fish > ~/.config/fish/completions/onlineca.fish
";

/// `onlineca man --help`.
pub const MAN: &str = "\
Examples:
  onlineca man | man -l -
  onlineca man --dir /usr/local/share/man/man1   # onlineca.1 and one page per command
";

/// `onlineca ca --help`.
pub const CA: &str = "\
Examples:
  onlineca ca status --config /etc/onlineca/onlineca.toml
  onlineca ca rotate --config /etc/onlineca/onlineca.toml --root-key /media/offline/root.key
";

/// `onlineca ca rotate --help`.
pub const CA_ROTATE: &str = "\
Examples:
  # The root key comes back from offline storage for this one signature:
  onlineca ca rotate --config /etc/onlineca/onlineca.toml --root-key /media/offline/root.key
  # Encrypted keys: the same passphrase opens the root key, the old and the new issuing key:
  onlineca ca rotate --config /etc/onlineca/onlineca.toml --passphrase-file /root/ca.pass
  # Then restart every instance, and check:
  onlineca ca status --config /etc/onlineca/onlineca.toml
";

/// `onlineca ca status --help`.
pub const CA_STATUS: &str = "\
Examples:
  onlineca ca status --config /etc/onlineca/onlineca.toml
";

/// `onlineca store --help`.
pub const STORE: &str = "\
Examples:
  onlineca store status --config /etc/onlineca/onlineca.toml
  # After installing a new onlineca, before restarting the instances on it:
  onlineca store migrate --config /etc/onlineca/onlineca.toml
";

/// `onlineca cert sign --help`.
pub const CERT_SIGN: &str = "\
Examples:
  # A CSR made on the service's host; only its key is used:
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout api.key \\
      -subj /CN=api.example.org -out api.csr
  onlineca cert sign --config /etc/onlineca/onlineca.toml --csr api.csr \\
      --dns api.example.org --ip 10.0.0.8 --out api.pem
  # Key and certificate in one step (the key file is written 0600):
  onlineca cert sign --config /etc/onlineca/onlineca.toml --generate-key \\
      --key-out db.key --dns db.internal --out db.pem
  # The CSR's own names, checked against [server_certificate] allow_domains:
  onlineca cert sign --config /etc/onlineca/onlineca.toml --csr web.csr --use-csr-names
  # FOR TESTING ONLY, no CA: clients must be told to trust it (curl --cacert test.pem):
  onlineca cert sign --self-signed --dns localhost --key-out test.key --out test.pem
";
