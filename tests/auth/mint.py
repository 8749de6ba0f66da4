"""Mints join tokens with the real minters and writes the vectors roomcast's
verifier must agree with (tests/auth_vectors.rs reads them).

    python mint.py OUT.json

Django's django.core.signing (dumps, plain and compress=True, and
TimestampSigner.sign_object) and PyJWT make the tokens, at a fixed "now" so
the file is the same on every run. Each vector says what roomcast must
decide: "ok" (with the identity's raw JSON and write) or a reason label of
roomcast_auth_rejections_total. Django's own signing.loads checks the same
Django-format tokens, so a vector that disagrees with Django (beyond the
documented future-timestamp rule) fails here first.
"""

import base64
import json
import sys
import warnings
from unittest import mock

import django
import jwt
from django.conf import settings

settings.configure()
from django.core import signing  # noqa: E402  (needs settings)

assert django.VERSION[:2] == (5, 2), django.get_version()
# PyJWT warns that the HS512 vector's key is short for HS512: that one is
# meant to be refused anyway.
warnings.filterwarnings("ignore", module="jwt")

KEY = "django-insecure-9x!roomcast-interop-key-3k2j1h0g"
OLD = "django-insecure-old-roomcast-key-1234567890abcdef"
WRONG = "django-insecure-not-the-key-at-all-0987654321zyxw"
SALT = "roomcast"
MAX_AGE = 3600
NOW = 1_750_000_000

vectors = []


def add(name, fmt, token, room, expect, user=None, write=True):
    vectors.append(
        {
            "name": name,
            "format": fmt,
            "token": token,
            "room": room,
            "expect": expect,
            "user": user,
            "write": write,
        }
    )


def at(t):
    """Django's signing reads time.time(): fix it."""
    return mock.patch("django.core.signing.time.time", return_value=t)


def dumps(obj, key=KEY, salt=SALT, t=NOW - 10, compress=False):
    with at(t):
        return signing.dumps(obj, key=key, salt=salt, compress=compress)


def django_verdict(token):
    """What Django's own loads says at NOW (with the fallback key)."""
    with at(NOW):
        try:
            signing.loads(token, key=KEY, salt=SALT, max_age=MAX_AGE, fallback_keys=[OLD])
            return "ok"
        except signing.SignatureExpired:
            return "expired"
        except signing.BadSignature:
            return "bad_signature"


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).rstrip(b"=").decode()


# --- Django's signing.dumps ------------------------------------------------
lobby = {"room": "lobby", "user": "ann"}
add("dumps accepted", "django", dumps(lobby), "lobby", "ok", '"ann"')
big = {"rooms": ["team-%d" % i for i in range(40)] + ["lobby"], "user": "ann"}
z = dumps(big, compress=True)
assert z.startswith("."), z
add("dumps compress=True", "django", z, "lobby", "ok", '"ann"')
add("dumps compress=True, another room", "django", z, "hall", "other_room")
with at(NOW - 10):
    s = signing.TimestampSigner(key=KEY, salt=SALT)
    add("TimestampSigner.sign_object", "django", s.sign_object(lobby), "lobby", "ok", '"ann"')
    zs = s.sign_object(big, compress=True)
    assert zs.startswith(".")
    add("TimestampSigner.sign_object compress=True", "django", zs, "team-7", "ok", '"ann"')
add("dumps wrong key", "django", dumps(lobby, key=WRONG), "lobby", "bad_signature")
add("dumps wrong salt", "django", dumps(lobby, salt="django.core.signing"), "lobby", "bad_signature")
add("dumps fallback key", "django", dumps(lobby, key=OLD), "lobby", "ok", '"ann"')
add("dumps at max_age", "django", dumps(lobby, t=NOW - MAX_AGE), "lobby", "ok", '"ann"')
add("dumps expired by max_age", "django", dumps(lobby, t=NOW - MAX_AGE - 1), "lobby", "expired")
add("dumps another room", "django", dumps(lobby), "hall", "other_room")
prefix = {"rooms": ["team-*", "lobby"], "user": 42}
add("dumps prefix room", "django", dumps(prefix), "team-red", "ok", "42")
add("dumps prefix needs the dash", "django", dumps(prefix), "teamred", "other_room")
add("dumps exact room in a list", "django", dumps(prefix), "lobby", "ok", "42")
add(
    "dumps read-only",
    "django",
    dumps({"room": "lobby", "user": "bob", "write": False}),
    "lobby",
    "ok",
    '"bob"',
    False,
)
add("dumps sub as identity", "django", dumps({"room": "lobby", "sub": 7}), "lobby", "ok", "7")
add("dumps anonymous", "django", dumps({"room": "lobby"}), "lobby", "ok", None)
add("dumps non-ASCII user", "django", dumps({"room": "lobby", "user": "zoë"}), "lobby", "ok", '"zo\\u00eb"')
good = dumps({"room": "lobby", "user": "ann"})
payload, ts, sig = good.split(":")
forged = ":".join([b64({"room": "vault", "user": "ann"}), ts, sig])
add("dumps tampered payload", "django", forged, "vault", "bad_signature")
add("dumps tampered timestamp", "django", ":".join([payload, "1zzzzz", sig]), "lobby", "bad_signature")
add("dumps truncated signature", "django", good[:-2], "lobby", "bad_signature")
add("dumps names no room", "django", dumps({"user": "ann"}), "lobby", "malformed")
add("dumps not an object", "django", dumps(["lobby"]), "lobby", "malformed")
add("dumps object as user", "django", dumps({"room": "lobby", "user": {"id": 1}}), "lobby", "malformed")
# Django accepts any future timestamp; roomcast allows 60 s of clock skew.
add("dumps within clock skew", "django", dumps(lobby, t=NOW + 60), "lobby", "ok", '"ann"')
add("dumps from the future", "django", dumps(lobby, t=NOW + 3600), "lobby", "not_yet_valid")

for v in vectors:
    if v["format"] != "django":
        continue
    want = v["expect"]
    if want in ("other_room", "malformed", "not_yet_valid"):
        want = "ok"  # decided by roomcast after Django's checks pass
    got = django_verdict(v["token"])
    assert got == want, (v["name"], got, want)

# --- PyJWT, HS256 ----------------------------------------------------------
def hs256(claims, key=KEY, alg="HS256", headers=None):
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


claims = {"room": "lobby", "sub": "42", "exp": NOW + 300}
add("jwt accepted", "jwt", hs256(claims), "lobby", "ok", '"42"')
add("jwt user wins over sub", "jwt", hs256({**claims, "user": "ann"}), "lobby", "ok", '"ann"')
add("jwt wrong key", "jwt", hs256(claims, key=WRONG), "lobby", "bad_signature")
add("jwt fallback key", "jwt", hs256(claims, key=OLD), "lobby", "ok", '"42"')
add("jwt expired by exp", "jwt", hs256({**claims, "exp": NOW - 1}), "lobby", "expired")
add("jwt exp is now", "jwt", hs256({**claims, "exp": NOW}), "lobby", "expired")
add("jwt without exp", "jwt", hs256({"room": "lobby"}), "lobby", "malformed")
add("jwt another room", "jwt", hs256(claims), "hall", "other_room")
add(
    "jwt prefix rooms",
    "jwt",
    hs256({"rooms": ["lob*"], "user": "ann", "exp": NOW + 60}),
    "lobby-2",
    "ok",
    '"ann"',
)
add(
    "jwt read-only",
    "jwt",
    hs256({**claims, "write": False}),
    "lobby",
    "ok",
    '"42"',
    False,
)
add("jwt nbf ahead", "jwt", hs256({**claims, "nbf": NOW + 600}), "lobby", "not_yet_valid")
add("jwt iat ahead", "jwt", hs256({**claims, "iat": NOW + 600}), "lobby", "not_yet_valid")
add("jwt iat and nbf now", "jwt", hs256({**claims, "iat": NOW, "nbf": NOW}), "lobby", "ok", '"42"')
add("jwt HS512", "jwt", hs256(claims, alg="HS512"), "lobby", "malformed")
add("jwt alg none", "jwt", jwt.encode(claims, None, algorithm="none"), "lobby", "malformed")
add("jwt kid header", "jwt", hs256(claims, headers={"kid": "k1"}), "lobby", "ok", '"42"')
h, p, s = hs256(claims).split(".")
add("jwt tampered claims", "jwt", ".".join([h, b64({**claims, "room": "vault"}), s]), "vault", "bad_signature")
add("jwt truncated", "jwt", ".".join([h, p]), "lobby", "malformed")

for v in vectors:
    if v["format"] == "jwt" and v["expect"] == "ok":
        jwt.decode(v["token"], [KEY, OLD][v["name"] == "jwt fallback key"], algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})

doc = {
    "minted_by": {"django": django.get_version(), "pyjwt": jwt.__version__},
    "secret": KEY,
    "fallbacks": [OLD],
    "salt": SALT,
    "max_age": MAX_AGE,
    "now": NOW,
    "vectors": vectors,
}
with open(sys.argv[1], "w") as f:
    json.dump(doc, f, indent=1)
print(f"[auth] {len(vectors)} vectors from Django {django.get_version()} and PyJWT {jwt.__version__} -> {sys.argv[1]}")
