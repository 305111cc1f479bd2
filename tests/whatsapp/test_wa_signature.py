"""X-Hub-Signature-256: HMAC-SHA256 over the exact bytes Meta sent."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from zapbase.whatsapp.signature import sign, verify

SECRET = "app-secret"
# Meta signs an escaped-unicode body: "José" arrives as "Jos\u00e9".
ESCAPED = b'{"profile":{"name":"Jos\\u00e9"},"text":"caf\\u00e9 \\/ ok"}'


def test_sign_is_lowercase_hex_hmac_sha256_with_prefix() -> None:
    expected = hmac.new(SECRET.encode(), ESCAPED, hashlib.sha256).hexdigest()
    assert sign(ESCAPED, SECRET) == f"sha256={expected}"
    assert expected == expected.lower()


def test_verify_accepts_the_raw_escaped_bytes() -> None:
    assert verify(ESCAPED, sign(ESCAPED, SECRET), [SECRET])


def test_reserialised_payload_has_a_different_signature() -> None:
    decoded = json.dumps(json.loads(ESCAPED), ensure_ascii=False).encode()
    assert "José".encode() in decoded
    header = sign(ESCAPED, SECRET)
    assert sign(decoded, SECRET) != header
    assert not verify(decoded, header, [SECRET])


def test_verify_rejects_one_changed_hex_digit() -> None:
    header = sign(ESCAPED, SECRET)
    last = header[-1]
    tampered = header[:-1] + ("0" if last != "0" else "1")
    assert not verify(ESCAPED, tampered, [SECRET])


def test_verify_rejects_one_changed_body_byte() -> None:
    header = sign(ESCAPED, SECRET)
    assert not verify(ESCAPED.replace(b"ok", b"OK"), header, [SECRET])


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha256"])
def test_verify_rejects_missing_or_empty_header(header: str | None) -> None:
    assert not verify(ESCAPED, header, [SECRET])


def test_verify_rejects_wrong_prefix() -> None:
    digest = sign(ESCAPED, SECRET).removeprefix("sha256=")
    assert not verify(ESCAPED, f"sha1={digest}", [SECRET])
    assert not verify(ESCAPED, digest, [SECRET])


def test_verify_accepts_any_of_several_secrets_for_rotation() -> None:
    header = sign(ESCAPED, "new-secret")
    assert verify(ESCAPED, header, ["old-secret", "new-secret"])
    assert not verify(ESCAPED, header, ["old-secret"])


def test_verify_ignores_empty_secrets_and_fails_without_any() -> None:
    forged = "sha256=" + hmac.new(b"", ESCAPED, hashlib.sha256).hexdigest()
    assert not verify(ESCAPED, forged, ["", ""])
    assert not verify(ESCAPED, sign(ESCAPED, SECRET), [])


def test_sign_refuses_an_empty_secret() -> None:
    with pytest.raises(ValueError, match="empty app secret"):
        sign(ESCAPED, "")
