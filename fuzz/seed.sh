#!/bin/sh
# Writes the seed corpora under fuzz/seeds/<target>/ (git-ignored): valid inputs
# made fresh with openssl, so no private key is ever committed. Keys live in a
# temporary directory that is removed on exit. Needs openssl and base64.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
seeds="$here/seeds"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$seeds"
mkdir -p "$seeds/csr" "$seeds/body" "$seeds/client_chain" "$seeds/trustroots_client" "$seeds/config"
cd "$tmp"

# --- CSRs: every accepted key type, DER and PEM, plus refused ones.
csr() { # name, openssl -newkey argument(s)
    name=$1; shift
    openssl req -new "$@" -nodes -keyout "$name.key" -subj "/CN=ignored/O=Anything" \
        -out "$name.csr" 2>/dev/null
    openssl req -in "$name.csr" -outform DER -out "$name.der"
}
csr p256 -newkey ec -pkeyopt ec_paramgen_curve:P-256
csr p384 -newkey ec -pkeyopt ec_paramgen_curve:P-384
csr ed25519 -newkey ed25519
csr rsa2048 -newkey rsa:2048
csr rsa1024 -newkey rsa:1024                            # refused: too small
csr p521 -newkey ec -pkeyopt ec_paramgen_curve:P-521    # refused: curve
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ext.key \
    -subj "/CN=x" -addext "subjectAltName=DNS:evil.example" -addext "basicConstraints=critical,CA:TRUE" \
    -out ext.csr 2>/dev/null
openssl req -in ext.csr -outform DER -out ext.der
for n in p256 p384 ed25519 rsa2048 rsa1024 p521 ext; do
    cp "$n.der" "$seeds/csr/$n.der"
    cp "$n.csr" "$seeds/csr/$n.pem"
done
base64 -w0 p256.der > "$seeds/csr/p256.b64"

# --- Request bodies: Content-Type line, then the body.
body() { # file, content type, body file
    { printf '%s\n' "$2"; cat "$3"; } > "$seeds/body/$1"
}
urlenc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""), end="")' 2>/dev/null || od -An -tx1 -v | tr -d ' \n' | sed 's/\(..\)/%\1/g'; }
printf 'certificate_request=%s' "$(urlenc < p256.csr)" > form
body form "application/x-www-form-urlencoded" form
printf 'username=alice&certificate_request=%s&extra=1' "$(urlenc < ed25519.csr)" > form2
body form-username "application/x-www-form-urlencoded; charset=utf-8" form2
printf 'certificate_request=%s' "$(base64 -w0 p384.der | urlenc)" > form3
body form-base64 "" form3
printf 'certificate_request=%s&certificate_request=%s' "$(urlenc < p256.csr)" "$(urlenc < p256.csr)" > form4
body form-twice "application/x-www-form-urlencoded" form4
{
    printf -- '--XyZ\r\nContent-Disposition: form-data; name="username"\r\n\r\nalice\r\n'
    printf -- '--XyZ\r\nContent-Disposition: form-data; name="certificate_request"; filename="a.csr"\r\n'
    printf 'Content-Type: application/octet-stream\r\n\r\n'
    cat p256.csr
    printf '\r\n--XyZ--\r\n'
} > mp
body multipart 'multipart/form-data; boundary=XyZ' mp
{
    printf -- '--b\r\nContent-Disposition: form-data; name="certificate_request"\r\n\r\n'
    cat rsa2048.der
    printf '\r\n--b--\r\n'
} > mp2
body multipart-der 'multipart/form-data; boundary="b"' mp2
body pkcs10-der "application/pkcs10" p256.der
body pkcs10-pem "application/pkcs10" p384.csr
body pem-file "application/x-pem-file" ed25519.csr
body text-plain "text/plain" p256.csr
body untyped-der "" p256.der
body untyped-pem "" rsa2048.csr
body octet-der "application/octet-stream" ed25519.der

# --- Client certificate chains: a root, an issuing CA and leaves, openssl-made.
cat > ext.cnf <<'CNF'
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
[noeku]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
CNF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key \
    -subj "/O=Fuzz/OU=Online CA/CN=Fuzz Root CA" -days 3650 -out root.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
sign() { # name, subject, issuer name, extension section, days, [key options...]
    n=$1 subj=$2 iss=$3 sect=$4 days=$5; shift 5
    openssl req -new "$@" -nodes -keyout "$n.key" -subj "$subj" -out "$n.req" 2>/dev/null
    openssl x509 -req -in "$n.req" -CA "$iss.pem" -CAkey "$iss.key" -CAcreateserial \
        -days "$days" -extfile ext.cnf -extensions "$sect" -out "$n.pem" 2>/dev/null
    openssl x509 -in "$n.pem" -outform DER -out "$n.der"
}
sign issuing "/O=Fuzz/OU=Online CA/CN=Fuzz Issuing CA" root ca 1825 -newkey ec -pkeyopt ec_paramgen_curve:P-256
sign alice "/O=Fuzz/OU=Users/CN=alice" issuing client 1000 -newkey ec -pkeyopt ec_paramgen_curve:P-256
sign bob-rsa "/O=Fuzz/OU=Users/CN=bob" issuing client 1000 -newkey rsa:2048
sign carol-ed "/O=Fuzz/OU=Users/CN=carol" issuing client 1000 -newkey ed25519
sign server "/CN=localhost" issuing server 1000 -newkey ec -pkeyopt ec_paramgen_curve:P-256
sign noeku "/O=Fuzz/OU=Users/CN=dave" issuing noeku 1000 -newkey ec -pkeyopt ec_paramgen_curve:P-256
sign portal "/O=Fuzz/OU=Portals/CN=portal.example.org" issuing client 1000 -newkey ec -pkeyopt ec_paramgen_curve:P-384
sign other-portal "/O=Fuzz/OU=Portals/CN=other.example.org" root client 1000 -newkey ec -pkeyopt ec_paramgen_curve:P-256
sign expired "/O=Fuzz/OU=Users/CN=erin" issuing client 1 -newkey ec -pkeyopt ec_paramgen_curve:P-256
openssl x509 -in root.pem -outform DER -out root.der
cat issuing.pem root.pem > "$seeds/client_chain.anchor.pem"
for n in alice bob-rsa carol-ed server noeku portal other-portal expired issuing root; do
    cp "$n.der" "$seeds/client_chain/$n.der"
done
cat alice.der issuing.der > "$seeds/client_chain/alice+issuing.der"
cat portal.der issuing.der root.der > "$seeds/client_chain/portal+issuing+root.der"
cat other-portal.der root.der > "$seeds/client_chain/other-portal+root.der"

# --- Trust-roots answers, both encodings: <hash>.0 and <hash>.signing_policy.
h_root=$(openssl x509 -in root.pem -noout -subject_hash)
h_iss=$(openssl x509 -in issuing.pem -noout -subject_hash)
policy() {
    printf "access_id_CA      X509         '%s'\npos_rights        globus        CA:sign\ncond_subjects     globus       '\"/O=Fuzz/*\"'\n" "$1"
}
policy "/O=Fuzz/OU=Online CA/CN=Fuzz Root CA" > root.policy
policy "/O=Fuzz/OU=Online CA/CN=Fuzz Issuing CA" > iss.policy
files_form() {
    printf '%s.0=%s\n' "$h_root" "$(base64 -w0 root.pem)"
    printf '%s.signing_policy=%s\n' "$h_root" "$(base64 -w0 root.policy)"
    printf '%s.0=%s\n' "$h_iss" "$(base64 -w0 issuing.pem)"
    printf '%s.signing_policy=%s\n' "$h_iss" "$(base64 -w0 iss.policy)"
}
files_form > "$seeds/trustroots_client/files"
names="$h_root.0,$h_root.signing_policy,$h_iss.0,$h_iss.signing_policy"
files_form | sed 's/^/FILEDATA_/' > body.txt
{ printf 'TRUSTED_CERTS=%s\n' "$(printf '%s' "$names" | base64 -w0)"; cat body.txt; } \
    > "$seeds/trustroots_client/fields"
{ printf 'TRUSTED_CERTS=%s\r\n' "$names"; sed 's/$/\r/' body.txt; } \
    > "$seeds/trustroots_client/fields-plain-crlf"
printf '%s.0=%s\n' "$h_root" "$(cat root.pem issuing.pem | base64 -w0)" > "$seeds/trustroots_client/one-file-two-certs"

# --- Configuration: the committed examples (fuzz/regressions/config) are the seeds.
cp "$here"/regressions/config/* "$seeds/config/" 2>/dev/null || true

echo "seeds written to $seeds:"
for d in "$seeds"/*/; do printf '  %-20s %s files\n' "$(basename "$d")" "$(ls "$d" | wc -l)"; done
