"""Secrets are redacted before storage by default, refused or allowed by namespace policy."""

from __future__ import annotations

import pytest

from memvault import Memory, SecretDetected
from memvault.security.redact import redact_text

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7V2x\nabc+def/ghi==\n-----END RSA PRIVATE KEY-----"

POSITIVE = [
    ("aws_access_key", "my key is AKIAIOSFODNN7EXAMPLE ok"),
    ("github_token", "token ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
    ("openai_key", "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345"),
    ("anthropic_key", "use sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
    ("slack_token", "bot token xoxb-1234567890-abcdefghij"),
    ("stripe_key", "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("google_api_key", "maps AIzaSyA-1234567890abcdefghijklmnopqrstu"),
    ("memvault_key", "mvk_abcdefghijkm_" + "A" * 43 + "abc123"),
    ("jwt", f"Authorization: Bearer {JWT}"),
    ("private_key", f"here:\n{PEM}\nthanks"),
    ("url_password", "db is postgres://admin:hunter2@db.internal:5432/app"),
    ("card_number", "my card 4111 1111 1111 1111 exp 12/29"),
    ("card_number", "amex 378282246310005"),
    # Edge cases the linear patterns must keep (they once only came from backtracking).
    ("jwt", f"token-{JWT}"),  # the run starts before "eyJ"
    ("jwt", f"{JWT}-and-more"),
    ("url_password", "see 1-redis+tls://u:pw@cache:6379"),  # the scheme starts inside a run
    ("url_password", "DSN=mysql://root:p:a:s@db/app"),  # a password holding colons
    ("private_key", PEM.replace("RSA", "OPENSSH")),
    ("private_key", PEM.replace("RSA PRIVATE KEY", "PGP PRIVATE KEY BLOCK")),
    ("private_key", "-----BEGIN PRIVATE KEY-----\ntruncated\n" + PEM),  # first BEGIN to first END
    ("card_number", "card 4111-1111-1111-1111."),
]
NEGATIVE = [
    "call me at 555-123-4567 tomorrow",
    "order number 1234567890123 shipped",  # 13 digits, fails Luhn
    "the ISBN is 978-3-16-148410-0",
    "visit https://example.com/path?x=1",
    "a sk- prefix alone is not a key: sk-short",
    "eyJ is how base64 JSON begins",
    "postgres://localhost:5432/app has no password",
    "1111 1111 1111 1111 is all ones",
    "-----BEGIN PRIVATE KEY-----\nno end in sight",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0 has two segments",
    "a-b-c-d://host/path and user@example.com",
]


@pytest.mark.parametrize(
    ("kind", "text"), POSITIVE, ids=[f"{k}-{i}" for i, (k, _) in enumerate(POSITIVE)]
)
def test_detects(kind: str, text: str) -> None:
    cleaned, kinds = redact_text(text)
    assert kinds == [kind]
    assert f"[REDACTED:{kind}]" in cleaned


@pytest.mark.parametrize("text", NEGATIVE)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert redact_text(text) == (text, [])


def test_a_truncated_key_before_a_whole_one_is_redacted_from_its_own_header() -> None:
    cleaned, kinds = redact_text("-----BEGIN PRIVATE KEY-----\nMIIhalf\n" + PEM + "\nafter")
    assert (cleaned, kinds) == ("[REDACTED:private_key]\nafter", ["private_key"])


def test_url_keeps_everything_but_the_password() -> None:
    cleaned, _ = redact_text("postgres://admin:hunter2@db.internal:5432/app")
    assert cleaned == "postgres://admin:[REDACTED:url_password]@db.internal:5432/app"


def test_redacted_by_default_and_the_result_says_so(memory: Memory) -> None:
    added = memory.add("my aws key is AKIAIOSFODNN7EXAMPLE", user_id="u", metadata={"note": JWT})
    [result] = added["results"]
    assert result["redactions"] == ["aws_access_key", "jwt"]
    stored = memory.get(result["id"])
    assert stored is not None
    assert stored["memory"] == "my aws key is [REDACTED:aws_access_key]"
    assert stored["metadata"] == {"note": "[REDACTED:jwt]"}
    clean = memory.add("no secrets here", user_id="u")["results"][0]
    assert "redactions" not in clean


def test_reject_and_allow_policies(memory: Memory) -> None:
    memory.configure_namespace(secret_policy="reject")
    with pytest.raises(SecretDetected) as caught:
        memory.add_many(
            [
                {"messages": "fine", "user_id": "u"},
                {"messages": "pw postgres://a:b@h/x", "user_id": "u"},
            ]
        )
    assert "postgres" not in str(caught.value) and caught.value.code == "secret_detected"
    assert memory.get_all(user_id="u")["results"] == []
    memory.configure_namespace(secret_policy="allow")
    kept = memory.add("AKIAIOSFODNN7EXAMPLE", user_id="u")["results"][0]
    assert memory.get(kept["id"])["memory"] == "AKIAIOSFODNN7EXAMPLE"
    assert memory.namespaced("other").namespace_settings()["secret_policy"] == "redact"


def test_update_applies_the_secret_policy_too(memory: Memory) -> None:
    memory_id = memory.add("nothing secret yet", user_id="u")["results"][0]["id"]
    memory.update(memory_id, "my key is AKIAIOSFODNN7EXAMPLE", {"dsn": "pg://a:hunter2@h/x"})
    stored = memory.get(memory_id)
    assert stored is not None
    assert stored["memory"] == "my key is [REDACTED:aws_access_key]"
    assert stored["metadata"] == {"dsn": "pg://a:[REDACTED:url_password]@h/x"}
    memory.configure_namespace(secret_policy="reject")
    with pytest.raises(SecretDetected):
        memory.update(memory_id, "now AKIAIOSFODNN7EXAMPLE")
    with pytest.raises(SecretDetected):
        memory.update(memory_id, metadata={"jwt": JWT})
    assert memory.get(memory_id)["memory"] == "my key is [REDACTED:aws_access_key]"


def test_default_ttl_per_namespace(memory: Memory) -> None:
    memory.configure_namespace(default_ttl_seconds=3600)
    expiring = memory.add("expires in an hour", user_id="u")["results"][0]
    explicit = memory.add("explicit", user_id="u", expiration_date="2999-01-01")["results"][0]
    assert memory.get(expiring["id"])["expires_at"] is not None
    assert memory.get(explicit["id"])["expires_at"].startswith("2999")
    assert memory.namespaced("other").add("no ttl", user_id="u")["results"][0]
    assert memory.namespaced("other").get_all(user_id="u")["results"][0]["expires_at"] is None
    memory.configure_namespace(default_ttl_seconds=None)
    assert memory.namespace_settings()["default_ttl_seconds"] is None


def test_metadata_keys_are_redacted_without_losing_a_value(memory: Memory) -> None:
    other = "AKIAIOSFODNN7EXAMPL2"
    added = memory.add(
        "a note",
        user_id="u",
        metadata={
            "AKIAIOSFODNN7EXAMPLE": "one",
            other: "two",
            "[REDACTED:aws_access_key]#2": "three",
            "nested": {"AKIAIOSFODNN7EXAMPLE": 1},
        },
    )["results"][0]
    stored = memory.get(added["id"])
    assert stored is not None
    assert stored["metadata"] == {
        "[REDACTED:aws_access_key]": "one",
        "[REDACTED:aws_access_key]#3": "two",
        "[REDACTED:aws_access_key]#2": "three",
        "nested": {"[REDACTED:aws_access_key]": 1},
    }
    assert "AKIA" not in str(stored)


@pytest.mark.parametrize("policy", ["redact", "reject"])
def test_an_id_holding_a_secret_is_refused_not_redacted(memory: Memory, policy: str) -> None:
    memory.configure_namespace(secret_policy=policy)
    with pytest.raises(SecretDetected) as caught:
        memory.add("a note", user_id="u", actor_id="AKIAIOSFODNN7EXAMPLE")
    assert "AKIA" not in str(caught.value)
    with pytest.raises(SecretDetected):
        memory.add([{"role": "user", "content": "hi", "name": "ghp_" + "a" * 36}], user_id="u")
    # a numeric id that happens to pass the Luhn check is an id, not a card number
    memory.add("a note", user_id="u", actor_id="4111111111111111")
    assert memory.get_all(user_id="u")["results"][0]["memory"] == "a note"
    memory.configure_namespace(secret_policy="allow")
    memory.add("kept", user_id="u", actor_id="AKIAIOSFODNN7EXAMPLE")
