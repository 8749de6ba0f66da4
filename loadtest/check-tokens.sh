#!/usr/bin/env bash
# Checks the harness's join tokens against the real thing: Django 5.2's
# django.core.signing.loads and PyJWT must accept what `loadtest mint-token` (the same
# code every client mints with) prints, and refuse a tampered or wrong-key token.
#   loadtest/check-tokens.sh              # builds the harness (debug) when needed
#   LOADTEST=target/release/loadtest loadtest/check-tokens.sh
# A venv with Django 5.2 and PyJWT is made once under target/token-check/ (pip).
# Exit status 0 when every check passed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=target/token-check/.venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import django, jwt' 2>/dev/null; then
    echo "check-tokens: creating $VENV (Django 5.2, PyJWT)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "django>=5.2,<5.3" "PyJWT>=2.8,<3"
fi
if [ -z "${LOADTEST:-}" ]; then
    nice -n 10 cargo build -q -p loadtest --bin loadtest
    LOADTEST=target/debug/loadtest
fi
KEY='loadtest-check: a key with spaces & symbols'
NOW=$(date +%s)
mint() { "$LOADTEST" mint-token --token-secret "$KEY" --at "$NOW" "$@"; }
DJANGO_R7=$(mint --room r7)
DJANGO_SALT=$(mint --room lobby --token-salt other-salt)
JWT_R7=$(mint --room r7 --token-format jwt)
export KEY NOW DJANGO_R7 DJANGO_SALT JWT_R7
"$VENV/bin/python" - <<'PY'
import os, sys
from unittest import mock
import django
from django.conf import settings
settings.configure(SECRET_KEY="unused: every call names its key")
django.setup()
from django.core import signing
import jwt

key = os.environ["KEY"]
failures = 0

checks = 0

def check(what, ok, detail=""):
    global failures, checks
    checks += 1
    print(("ok      " if ok else "FAILED  ") + what + (f": {detail}" if detail else ""))
    failures += 0 if ok else 1

tok = os.environ["DJANGO_R7"]
got = signing.loads(tok, key=key, salt="roomcast", max_age=3600)
check("Django signing.loads accepts the harness's token", got == {"room": "r7"}, repr(got))
with mock.patch("django.core.signing.time.time", return_value=int(os.environ["NOW"])):
    django_tok = signing.dumps({"room": "r7"}, key=key, salt="roomcast")
check("it is byte for byte what signing.dumps makes at that second", tok == django_tok, django_tok)
for name, bad in [
    ("a tampered payload", "eyJyb29tIjoicjgifQ" + tok[tok.index(":"):]),
    ("a wrong key", None),
]:
    try:
        if bad is None:
            signing.loads(tok, key=key + "x", salt="roomcast", max_age=3600)
        else:
            signing.loads(bad, key=key, salt="roomcast", max_age=3600)
        check(f"Django refuses {name}", False)
    except signing.BadSignature:
        check(f"Django refuses {name}", True)
got = signing.loads(os.environ["DJANGO_SALT"], key=key, salt="other-salt", max_age=3600)
check("--token-salt is Django's salt", got == {"room": "lobby"}, repr(got))

claims = jwt.decode(os.environ["JWT_R7"], key, algorithms=["HS256"])
check("PyJWT accepts the harness's HS256 token", claims.get("room") == "r7" and "exp" in claims, repr(claims))
try:
    jwt.decode(os.environ["JWT_R7"], key + "x", algorithms=["HS256"])
    check("PyJWT refuses a wrong key", False)
except jwt.InvalidSignatureError:
    check("PyJWT refuses a wrong key", True)
print(f"{checks - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
PY
