"""The OpenAI-compatible chat client: retries, backoff, Retry-After, response_format fallback."""

from __future__ import annotations

import time

import pytest

from memvault.errors import LLMBadOutput, LLMUnavailable
from memvault.llm.client import OpenAIChat
from memvault.testing import Reply, ScriptedChatServer

SCHEMA = {"type": "object"}
ASK = [{"role": "user", "content": "secret prompt text"}]


def client(server: ScriptedChatServer, **options: object) -> OpenAIChat:
    settings: dict[str, object] = {"max_attempts": 3, "backoff": 0.01, "timeout": 1.0}
    settings.update(options)
    return OpenAIChat(server.base_url, "scripted", **settings)  # type: ignore[arg-type]


def test_answer_and_json_schema_and_api_key_only_in_header() -> None:
    with ScriptedChatServer(['{"ok": true}'], api_key="sk-test") as server:
        llm = client(server, api_key="sk-test")
        assert llm.complete(ASK, schema=SCHEMA) == '{"ok": true}'
    request = server.requests[0]
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert "sk-test" not in str(request["body"])
    assert request["body"]["response_format"]["type"] == "json_schema"
    assert request["body"]["response_format"]["json_schema"]["schema"] == SCHEMA


def test_response_format_falls_back_to_json_object_then_plain() -> None:
    with ScriptedChatServer(
        ["{}", "{}"], refuse_response_format={"json_schema", "json_object"}
    ) as server:
        llm = client(server)
        assert llm.complete(ASK, schema=SCHEMA) == "{}"
        assert llm.complete(ASK, schema=SCHEMA) == "{}"  # remembered: no 400s the second time
    formats = [(r["body"].get("response_format") or {}).get("type") for r in server.requests]
    assert formats == ["json_schema", "json_object", None, None]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_retries_on_5xx_and_429_then_succeeds(status: int) -> None:
    with ScriptedChatServer([Reply(status=status), Reply(status=status), "{}"]) as server:
        assert client(server).complete(ASK, schema=None) == "{}"
    assert len(server.requests) == 3


def test_retry_after_is_honoured() -> None:
    with ScriptedChatServer([Reply(status=429, headers={"Retry-After": "1"}), "{}"]) as server:
        started = time.perf_counter()
        assert client(server).complete(ASK, schema=None) == "{}"
        assert time.perf_counter() - started >= 0.95


def test_timeouts_are_retried_then_unavailable() -> None:
    with ScriptedChatServer([Reply("{}", delay=1.0)] * 3) as server:
        llm = client(server, timeout=0.2, max_attempts=3)
        with pytest.raises(LLMUnavailable) as caught:
            llm.complete(ASK, schema=None)
    assert "timed out" in caught.value.message
    assert len(server.requests) == 3
    assert "secret prompt" not in caught.value.message


def test_unreachable_endpoint_is_unavailable_after_max_attempts() -> None:
    with ScriptedChatServer() as server:
        url = server.base_url
    llm = OpenAIChat(url, "m", max_attempts=2, backoff=0.0, timeout=0.5)
    with pytest.raises(LLMUnavailable, match="after 2 attempts"):
        llm.complete(ASK, schema=None)


def test_4xx_is_not_retried_and_bad_body_is_bad_output() -> None:
    with ScriptedChatServer([Reply(status=401)]) as server:
        with pytest.raises(LLMUnavailable, match="401"):
            client(server).complete(ASK, schema=None)
        assert len(server.requests) == 1
        server.push(Reply(body={"choices": []}))
        with pytest.raises(LLMBadOutput):
            client(server).complete(ASK, schema=None)
