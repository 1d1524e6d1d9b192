#!/usr/bin/env python3
"""Regenerates the test vectors of crates/core/src/trustroots/hash.rs.

Each vector is an X.509 Name (DER, hex) and what `openssl x509 -noout -subject_hash`
prints for a certificate with that subject (None when OpenSSL refuses to load it),
or what `openssl x509 -noout -subject -nameopt compat` (X509_NAME_oneline) prints.
Names come either from `openssl req -subj ...` (the subject is cut out of the
certificate OpenSSL made) or are written here byte by byte (for encodings `req`
cannot produce) and wrapped into a minimal certificate whose signature is junk:
`openssl x509` does not check signatures. Needs openssl and python3; prints Rust
array entries to paste. Run: python3 crates/core/tests/data/trustroots/vectors.py
"""
import os, subprocess, tempfile

def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        l = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, 'big')
        l = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + l + body

def read_tlv(d, i):
    tag = d[i]; n = d[i + 1]; h = 2
    if n & 0x80:
        k = n & 0x7f; n = int.from_bytes(d[i + 2:i + 2 + k], 'big'); h += k
    return tag, i + h, i + h + n  # tag, content start, end

def subject_of(cert):
    _, s, _ = read_tlv(cert, 0)          # Certificate
    _, i, _ = read_tlv(cert, s)          # tbsCertificate
    fields = []
    while len(fields) < 6:
        tag, cs, e = read_tlv(cert, i)
        if tag == 0xa0 and not fields:   # version
            i = e; continue
        fields.append(cert[i:e]); i = e
    return fields[4]                     # serial, sigalg, issuer, validity, subject

TMP = tempfile.mkdtemp()
KEY = os.path.join(TMP, 'k.pem')
subprocess.run(['openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', KEY], check=True)
SPKI = subprocess.run(['openssl', 'pkey', '-in', KEY, '-pubout', '-outform', 'DER'], check=True, capture_output=True).stdout

def wrap(name):
    alg = tlv(0x30, bytes.fromhex('06082a8648ce3d040302'))
    issuer = tlv(0x30, tlv(0x31, tlv(0x30, bytes.fromhex('0603550403') + tlv(0x0c, b'issuer'))))
    validity = tlv(0x30, tlv(0x17, b'250101000000Z') + tlv(0x17, b'350101000000Z'))
    tbs = tlv(0x30, tlv(0xa0, tlv(0x02, b'\x02')) + tlv(0x02, b'\x01') + alg + issuer + validity + name + SPKI)
    return tlv(0x30, tbs + alg + tlv(0x03, b'\x00' + tlv(0x30, tlv(0x02, b'\x01') + tlv(0x02, b'\x01'))))

def openssl_hash(cert):
    p = subprocess.run(['openssl', 'x509', '-inform', 'DER', '-noout', '-subject_hash'], input=cert, capture_output=True)
    return p.stdout.decode().strip() if p.returncode == 0 else 'REJECT'

def openssl_req(args, config=None):
    cmd = ['openssl', 'req', '-new', '-x509', '-key', KEY, '-days', '1', '-outform', 'DER'] + args
    if config:
        path = os.path.join(TMP, 'req.cnf')
        open(path, 'w').write(config)
        cmd += ['-config', path]
    return subprocess.run(cmd, check=True, capture_output=True).stdout

OIDS = {'CN': '0603550403', 'O': '060355040a', 'OU': '060355040b', 'C': '0603550406',
        'email': '06092a864886f70d010901', 'DC': '060a0992268993f22c640119',
        'unknown': '06052b06010401'}

def name(*rdns):
    """rdns: lists of (attribute, tag, value bytes); the SET is written in the order given."""
    return tlv(0x30, b''.join(tlv(0x31, b''.join(
        tlv(0x30, bytes.fromhex(OIDS[a]) + tlv(t, v)) for a, t, v in rdn)) for rdn in rdns))

MASK_DEFAULT = '[req]\ndistinguished_name=dn\nstring_mask=default\n[dn]\n'
vectors = []
def req(label, args, config=None):
    cert = openssl_req(args, config)
    vectors.append((label, subject_of(cert), openssl_hash(cert)))
def raw(label, n):
    vectors.append((label, n, openssl_hash(wrap(n))))

req("req -subj / (empty)", ['-subj', '/'])
req("req -subj '/O=Example/OU=Online CA/CN=Example Online CA'", ['-subj', '/O=Example/OU=Online CA/CN=Example Online CA'])
req("req -subj '/O=example/OU=online  ca/CN=EXAMPLE ONLINE CA ' (same hash as above)", ['-subj', '/O=example/OU=online  ca/CN=EXAMPLE ONLINE CA '])
req("req -subj '/O=  Example   Org /CN=MiXeD  Case ' (spaces)", ['-subj', '/O=  Example   Org /CN=MiXeD  Case '])
req("req -multivalue-rdn -subj '/CN=a+OU=b'", ['-multivalue-rdn', '-subj', '/CN=a+OU=b'])
req("req -multivalue-rdn -subj '/O=Org/CN=Zed+CN=alpha+OU=Unit'", ['-multivalue-rdn', '-subj', '/O=Org/CN=Zed+CN=alpha+OU=Unit'])
req("req -subj '/DC=ORG/DC=Example/emailAddress=Alice@Example.ORG/CN=Alice' (IA5)", ['-subj', '/DC=ORG/DC=Example/emailAddress=Alice@Example.ORG/CN=Alice'])
req("req -utf8 -subj '/CN=Émile Zoë/O=日本' (UTF8String, non-ASCII kept as is)", ['-utf8', '-subj', '/CN=Émile Zoë/O=日本'])
req("req -utf8 -subj '/CN=émile zoë/O=日本' (non-ASCII case matters)", ['-utf8', '-subj', '/CN=émile zoë/O=日本'])
req("req -utf8 string_mask=default -subj '/CN=Émile/O=日本/OU=Plain' (T61String, BMPString, PrintableString)",
    ['-utf8', '-subj', '/CN=Émile/O=日本/OU=Plain'], MASK_DEFAULT)
req("req -utf8 string_mask=default -subj '/C=FR/CN=  ÀB  c   日本 ' (BMPString with spaces)",
    ['-utf8', '-subj', '/C=FR/CN=  ÀB  c   日本 '], MASK_DEFAULT)
req("req -subj '/O=Long/description=Ab Ab ... Cd' (200 characters: long-form lengths)", ['-subj', '/O=Long/description=' + 'Ab ' * 66 + 'Cd'])

U = 0x0c; P = 0x13; T61 = 0x14; IA5 = 0x16; UNIV = 0x1c; BMP = 0x1e
raw("hand-made: CN UTF8 '\\t A\\x0bB\\r\\n\\x0cC \\t' (all six ASCII spaces)", name([('CN', U, b'\t A\x0bB\r\n\x0cC \t')]))
raw("hand-made: CN UTF8 U+00A0 'A' U+00A0 (NBSP is not trimmed)", name([('CN', U, '\u00a0A\u00a0'.encode())]))
raw("hand-made: CN PrintableString '   ' (all spaces -> empty)", name([('CN', P, b'   ')]))
raw("hand-made: CN UTF8 '' (empty)", name([('CN', U, b'')]))
raw("hand-made: CN IA5String bytes 'Caf\\xe9' (read as Latin-1)", name([('CN', IA5, b'Caf\xe9')]))
raw("hand-made: CN PrintableString bytes 'A\\xc9' (read as Latin-1)", name([('CN', P, b'A\xc9')]))
raw("hand-made: CN T61String 'Gr\\xfc\\xdfe X' (Latin-1)", name([('CN', T61, b'Gr\xfc\xdfe X')]))
raw("hand-made: CN UniversalString ' Hi 😀 ' (UTF-32BE)", name([('CN', UNIV, ' Hi 😀 '.encode('utf-32-be'))]))
raw("hand-made: CN BMPString ' AB Ω ' (UTF-16BE)", name([('CN', BMP, ' AB Ω '.encode('utf-16-be'))]))
raw("hand-made: CN NumericString ' 12  34 ' (copied as is)", name([('CN', 0x12, b' 12  34 ')]))
raw("hand-made: unknown OID 1.3.6.1.4.1 UTF8 'X'", name([('unknown', U, b'X')]))
raw("hand-made: RDN {CN UTF8 'b', CN PrintableString 'A'} re-sorted after canonicalising",
    name([('CN', U, b'b'), ('CN', P, b'A')]))
raw("hand-made: RDN {CN UTF8 'b', CN PrintableString 'A'} in the other order",
    name([('CN', P, b'A'), ('CN', U, b'b')]))
raw("hand-made: two equal values in one RDN {CN 'x', CN 'X'}", name([('CN', U, b'x'), ('CN', P, b'X')]))
raw("hand-made: BIT STRING value with junk in the unused bits (masked)", name([('CN', 0x03, b'\x07\xff')]))
raw("hand-made: BIT STRING value 07 80 (same as above once masked)", name([('CN', 0x03, b'\x07\x80')]))
raw("hand-made: empty BIT STRING with unused bits 5", name([('CN', 0x03, b'\x05')]))
raw("hand-made: SEQUENCE value (copied as is)", name([('CN', 0x30, tlv(0x0c, b'Q'))]))
raw("hand-made: ObjectDescriptor (tag 7) value (copied as is)", name([('CN', 0x07, b'AB')]))
raw("hand-made: empty RDN SET then CN=x", tlv(0x30, tlv(0x31, b'') + name([('CN', U, b'x')])[2:]))
raw("hand-made: only an empty RDN SET", tlv(0x30, tlv(0x31, b'')))
raw("hand-made: CN=x alone (compare with the empty-SET vector)", name([('CN', U, b'x')]))
raw("hand-made: CN UTF8 'X  y' * 100 (400 bytes: two-byte lengths)", name([('CN', U, b'X  y' * 100)]))
raw("hand-made: CN UTF8 'x' with a non-minimal length 81 01", name([('CN', U, b'x')]).replace(bytes.fromhex('0c0178'), bytes.fromhex('0c810178')).replace(bytes.fromhex('300c310a3008'), bytes.fromhex('300d310b3009')))
raw("hand-made: CN=x with the SET length written 81 0a", bytes.fromhex('300d31810a300806035504030c0178'))
raw("hand-made: CN VisibleString (OpenSSL refuses the certificate)", name([('CN', 0x1a, b'AB')]))
raw("hand-made: CN GeneralString (refused)", name([('CN', 0x1b, b'AB')]))
raw("hand-made: CN OCTET STRING (refused)", name([('CN', 0x04, b'AB')]))
raw("hand-made: CN UTF8 invalid bytes c3 28 (refused)", name([('CN', U, b'\xc3\x28')]))
raw("hand-made: CN UTF8 encoded surrogate ed a0 80 (refused)", name([('CN', U, b'\xed\xa0\x80')]))
raw("hand-made: CN BMPString odd length (refused)", name([('CN', BMP, b'\x00A\x00')]))
raw("hand-made: CN BMPString surrogate pair for U+1F600 (refused)", name([('CN', BMP, '😀'.encode('utf-16-be'))]))
raw("hand-made: CN UniversalString 0x110000 (refused)", name([('CN', UNIV, b'\x00\x11\x00\x00')]))
raw("hand-made: CN context tag [1] (refused)", name([('CN', 0x81, b'AB')]))
raw("hand-made: CN constructed UTF8String (BER): pieces joined", name([('CN', 0x2c, tlv(0x0c, b'AB'))]))
raw("hand-made: CN constructed UTF8String, two pieces ' A' and 'B ', one nested", name([('CN', 0x2c, tlv(0x0c, b' A') + tlv(0x2c, tlv(0x0c, b'B ')))]))
raw("hand-made: CN constructed UTF8String whose piece is an OCTET STRING", name([('CN', 0x2c, tlv(0x04, b'AB'))]))
raw("hand-made: CN constructed BIT STRING pieces 07 and ff", name([('CN', 0x23, tlv(0x03, b'\x07') + tlv(0x03, b'\xff'))]))
def nest(k):
    v = tlv(0x0c, b'A')
    for _ in range(k):
        v = tlv(0x2c, v)
    return v
raw("hand-made: CN 'A' in 6 layers of constructed UTF8String (the most OpenSSL takes)", name([('CN', 0x2c, nest(6)[2:])]))
raw("hand-made: CN 'A' in 7 layers of constructed UTF8String (refused)", name([('CN', 0x2c, nest(7)[2:])]))
raw("hand-made: CN primitive tag 0x10 (SEQUENCE not constructed)", name([('CN', 0x10, b'AB')]))
raw("hand-made: CN SEQUENCE value with a non-minimal inner length (copied as is)", name([('CN', 0x30, bytes.fromhex('0c810151'))]))
raw("hand-made: AttributeTypeAndValue with a third element (refused)", tlv(0x30, tlv(0x31, tlv(0x30, bytes.fromhex('0603550403') + tlv(U, b'x') + tlv(U, b'y')))))

print('// Subject hashes: (Name DER, `openssl x509 -noout -subject_hash` or None when refused)')
for label, n, h in vectors:
    hv = 'None' if h == 'REJECT' else 'Some(0x%s)' % h
    print('        // %s' % label)
    print('        ("%s", %s),' % (n.hex(), hv))

def oid(dotted):
    a = [int(x) for x in dotted.split('.')]
    body = b''
    for x in [a[0] * 40 + a[1]] + a[2:]:
        enc = [x & 0x7f]; x >>= 7
        while x:
            enc.append(0x80 | (x & 0x7f)); x >>= 7
        body += bytes(reversed(enc))
    return tlv(0x06, body)

def nm(*rdns):
    return tlv(0x30, b''.join(tlv(0x31, b''.join(tlv(0x30, oid(o) + tlv(t, v)) for o, t, v in rdn)) for rdn in rdns))

def compat(n):
    p = subprocess.run(['openssl', 'x509', '-inform', 'DER', '-noout', '-subject', '-nameopt', 'compat'],
                       input=wrap(n), capture_output=True, check=True)
    out = p.stdout.decode('latin-1').rstrip('\n')
    assert out.startswith('subject=')
    return out[len('subject='):]

CN, O, OU = '2.5.4.3', '2.5.4.10', '2.5.4.11'
SHORT = ['2.5.4.3', '2.5.4.4', '2.5.4.5', '2.5.4.6', '2.5.4.7', '2.5.4.8', '2.5.4.9', '2.5.4.10', '2.5.4.11',
         '2.5.4.12', '2.5.4.13', '2.5.4.14', '2.5.4.15', '2.5.4.16', '2.5.4.17', '2.5.4.18', '2.5.4.20',
         '2.5.4.41', '2.5.4.42', '2.5.4.43', '2.5.4.44', '2.5.4.45', '2.5.4.46', '2.5.4.51', '2.5.4.54',
         '2.5.4.65', '2.5.4.72', '2.5.4.97', '2.5.4.100', '1.2.840.113549.1.9.1', '1.2.840.113549.1.9.2',
         '1.2.840.113549.1.9.8', '0.9.2342.19200300.100.1.1', '0.9.2342.19200300.100.1.3',
         '0.9.2342.19200300.100.1.25', '1.3.6.1.4.1.311.60.2.1.1', '1.3.6.1.4.1.311.60.2.1.2',
         '1.3.6.1.4.1.311.60.2.1.3']
onelines = [
    ('empty', tlv(0x30, b'')),
    ('the example CA', nm([(O, 0x0c, b'Example')], [(OU, 0x0c, b'Online CA')], [(CN, 0x0c, b'Example Online CA')])),
    ('multi-valued RDN in non-DER order', nm([(O, 0x0c, b'Org')], [(CN, 0x0c, b'a'), (OU, 0x0c, b'b'), (CN, 0x13, b'c')])),
    ('escapes', nm([(CN, 0x0c, b'a/b+c=d, e\\f\t"\'')])),
    ('UTF8String', nm([(CN, 0x0c, 'Émile 日本'.encode())])),
    ('BMPString', nm([(CN, 0x1e, 'AÉ日'.encode('utf-16-be'))])),
    ('T61String', nm([(CN, 0x14, b'\xc9\x7f~')])),
    ('UniversalString', nm([(CN, 0x1c, 'A'.encode('utf-32-be'))])),
    ('BIT STRING', nm([(CN, 0x03, b'\x07\xff')])),
    ('SEQUENCE', nm([(CN, 0x30, tlv(0x0c, b'Q'))])),
    ('constructed UTF8String', nm([(CN, 0x2c, tlv(0x0c, b'A') + tlv(0x0c, b'B'))])),
    ('unknown OIDs', nm([('1.2.3.4.5', 0x0c, b'x')], [('2.999.18446744073709551616.1', 0x0c, b'y')], [('0.9.2342.19200300.100.1.25', 0x16, b'org')])),
    ('an empty RDN', tlv(0x30, tlv(0x31, b'') + nm([(CN, 0x0c, b'x')], [(CN, 0x0c, b'y')])[2:])),
    ('all short names', nm(*[[(o, 0x0c, b'v')] for o in SHORT])),
]
print('// One-line names: (Name DER, `openssl x509 -noout -subject -nameopt compat` after "subject=")')
for label, n in onelines:
    print('        // %s' % label)
    print('        ("%s", r#"%s"#),' % (n.hex(), compat(n)))
