#!/usr/bin/env bash
# The test command (README.md, and so CI through .ci/run). Some tests need tools or a
# database; without them they skip, and `cargo test` alone would show a skipped test
# as "ok". So: say first which prerequisites are missing and which tests will skip,
# run the tests (extra arguments go to cargo test), and end with the tests that
# really skipped and what to install. With CI set a missing prerequisite is a
# failure, before anything is built.
set -uo pipefail
cd "$(dirname "$0")"

skips=$(mktemp)
trap 'rm -f "$skips"' EXIT
# The tests append one line per skip here (crates/testkit).
export ONLINECA_SKIP_LOG=$skips

missing=0
check() { # check WHAT TESTS INSTALL COMMAND...
  local what=$1 tests=$2 install=$3
  shift 3
  if "$@" >/dev/null 2>&1; then
    printf '  ok       %s\n' "$what"
  else
    printf '  MISSING  %s: %s will skip (%s)\n' "$what" "$tests" "$install"
    missing=$((missing + 1))
  fi
}
pg_url=${ONLINECA_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_hostport=$(printf '%s' "$pg_url" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#')
case $pg_hostport in *:*) ;; *) pg_hostport=$pg_hostport:5432 ;; esac
prerequisites() {
  missing=0
  echo "== test prerequisites"
  check openssl "every end-to-end test (fails)" "apt-get install openssl" command -v openssl
  check curl "every end-to-end test (fails)" "apt-get install curl" command -v curl
  check python3 "the store-failure test" "apt-get install python3" command -v python3
  check nginx "the relying-party tests" "apt-get install nginx" command -v nginx
  check htpasswd "the htpasswd import test" "apt-get install apache2-utils" command -v htpasswd
  check promtool "the metrics exposition and alert-rules checks" "apt-get install prometheus" \
    command -v promtool
  check "slapd and ldap-utils" "the LDAP tests" "apt-get install slapd ldap-utils" \
    bash -c 'PATH=$PATH:/usr/sbin command -v slapd && command -v ldapadd'
  check "softhsm2 and pkcs11-tool" "the PKCS#11 token tests" "apt-get install softhsm2 opensc" \
    bash -c 'test -e /usr/lib/softhsm/libsofthsm2.so && command -v softhsm2-util && command -v pkcs11-tool'
  check haproxy "the PROXY protocol (load balancer) tests" "apt-get install haproxy" \
    bash -c 'PATH=$PATH:/usr/sbin command -v haproxy'
  check "strongSwan pki" "the EST tests" \
    "apt-get install strongswan-pki libstrongswan-standard-plugins libstrongswan-extra-plugins" \
    command -v pki
  check "PHP with curl" "the PHP relying-party test" "apt-get install php-cli php-curl" \
    php -r 'exit(function_exists("curl_init") ? 0 : 1);'
  check "Python requests + cryptography" "the Python relying-party tests" \
    "python3 -m pip install requests cryptography" python3 -c 'import requests, cryptography'
  check "PostgreSQL at $pg_hostport" "the PostgreSQL store and shared-store tests" \
    "run it with a database test, or set ONLINECA_TEST_PG_URL" \
    timeout 3 bash -c "echo > /dev/tcp/${pg_hostport%:*}/${pg_hostport##*:}"
}

prerequisites
if [ "$missing" -gt 0 ] && [ -n "${CI:-}" ]; then
  echo "CI is set and $missing prerequisite(s) are missing: every test must run (.ci/run installs them)" >&2
  exit 1
fi

cargo test --workspace --locked --all-targets "$@"
status=$?

echo
prerequisites
if [ -s "$skips" ]; then
  echo "== $(wc -l <"$skips") test(s) SKIPPED (shown as passed above):"
  cut -f1,2 "$skips" | sort | uniq -c |
    while read -r n rest; do printf '  %3d  %s: %s\n' "$n" "${rest%%$'\t'*}" "${rest#*$'\t'}"; done
else
  echo "== no test skipped"
fi
exit "$status"
