#!/usr/bin/env bash
# Test certificates for wss:// runs, made at run time (never committed):
#   loadtest/gen-cert.sh OUTDIR [--rsa]
# writes into OUTDIR
#   ca.pem, ca.key             a throwaway test CA (ECDSA P-256), for `loadtest --ca OUTDIR/ca.pem`
#   server.pem, server.key     an ECDSA P-256 server certificate for 127.0.0.1, ::1 and
#                              localhost, signed by the CA (server.pem: leaf then CA)
#   rsa-server.pem, rsa-server.key   the same with an RSA 2048 key (with --rsa)
# Keys are PKCS#8 PEM. Valid 30 days. openssl is installed with apt-get when missing.
# Then, e.g.:
#   loadtest compare --scenario fanout --tls OUTDIR/server.pem,OUTDIR/server.key --ca OUTDIR/ca.pem
#   TLS_CERT=OUTDIR/server.pem TLS_KEY=OUTDIR/server.key loadtest/baselines/ws/run.sh 8443
set -euo pipefail
OUT=${1:-}
[ -n "$OUT" ] && [ "$OUT" != "-h" ] && [ "$OUT" != "--help" ] || {
    echo "usage: $0 OUTDIR [--rsa]" >&2
    exit 2
}
RSA=0
[ "${2:-}" = "--rsa" ] && RSA=1

if ! command -v openssl >/dev/null 2>&1; then
    echo "gen-cert: installing openssl" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openssl >&2
fi

mkdir -p "$OUT"
cd "$OUT"
umask 077
EXT=$(mktemp)
trap 'rm -f "$EXT" server.csr rsa-server.csr ca.srl' EXIT
cat > "$EXT" <<'X509'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
X509

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=roomcast loadtest CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem

# sign NAME KEYARGS...: NAME.key (PKCS#8) and NAME.pem (leaf, then the CA).
sign() {
    local name=$1
    shift
    openssl genpkey "$@" -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "/CN=localhost" -out "$name.csr"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
        -sha256 -extfile "$EXT" -out "$name.leaf" 2>/dev/null
    cat "$name.leaf" ca.pem > "$name.pem"
    rm -f "$name.leaf"
}
sign server -algorithm EC -pkeyopt ec_paramgen_curve:P-256
[ "$RSA" = 1 ] && sign rsa-server -algorithm RSA -pkeyopt rsa_keygen_bits:2048
chmod 644 ca.pem server.pem
[ "$RSA" = 1 ] && chmod 644 rsa-server.pem
echo "gen-cert: wrote $(cd "$OUT" && pwd): ca.pem server.pem server.key$([ "$RSA" = 1 ] && echo ' rsa-server.pem rsa-server.key')" >&2
