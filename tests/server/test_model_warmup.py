"""The server loads the embedding model in the background from its start: it answers /healthz
meanwhile, a search waits for that same load, /readyz says 503 until the model is loaded, and a
model that cannot load is reported with a stable code (and loaded again once it can).

The model here is a registered embedder whose load waits for the test to open a gate: no clock is
compared, so a slow machine can neither fail nor pass these tests by chance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from memvault import Embedder, EmbedderError, HashEmbedder, Memory, Settings, register_embedder
from tests.server.conftest import RunningServer

SLOW = "slow-load-test"


class SlowModel:
    """The load of the ``slow-load-test`` embedder: it waits for ``release``, then fails while
    ``broken``, else gives a ``HashEmbedder``."""

    def __init__(self) -> None:
        self.loading = threading.Event()
        self.release = threading.Event()
        self.loads = 0
        self.broken = False

    def load(self, settings: Settings) -> Embedder:
        self.loads += 1
        self.loading.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("the test never released the model")
        if self.broken:
            raise EmbedderError("the test's model did not load")
        return HashEmbedder()


_current: list[SlowModel] = [SlowModel()]
register_embedder(SLOW, lambda settings: _current[0].load(settings))


@pytest.fixture
def slow_model() -> Iterator[SlowModel]:
    model = SlowModel()
    _current[0] = model
    yield model
    model.release.set()  # no load thread is left waiting after the test


def readiness_after_load(server: RunningServer) -> httpx.Response:
    """/readyz once it no longer says ``starting`` (the background load has finished)."""
    deadline = time.monotonic() + 30
    with server.http() as anonymous:
        while time.monotonic() < deadline:
            answer = anonymous.get("/readyz")
            if answer.json() != {"status": "starting"}:
                return answer
            time.sleep(0.01)
    raise AssertionError("/readyz still said starting after 30 s")


def search(server: RunningServer, answers: list[httpx.Response]) -> None:
    with server.http(server.admin_key) as admin:
        answers.append(
            admin.post("/v1/memories/search/", json={"query": "cello", "user_id": "alice"})
        )


def test_healthz_answers_and_a_search_waits_while_the_model_loads(
    home: Path, start_server: Callable[..., RunningServer], slow_model: SlowModel
) -> None:
    with Memory(home, embedder=HashEmbedder()) as m:
        m.add("Alice plays the cello on Sundays", user_id="alice", infer=False)
    server = start_server(embedder=SLOW)
    assert slow_model.loading.wait(timeout=30), "the server did not start loading the model"
    with server.http() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        waiting = anonymous.get("/readyz")
        assert (waiting.status_code, waiting.json()) == (503, {"status": "starting"})

    answers: list[httpx.Response] = []
    searcher = threading.Thread(target=search, args=(server, answers))
    searcher.start()
    searcher.join(timeout=0.3)
    assert searcher.is_alive() and not answers, "a search answered before the model was loaded"
    slow_model.release.set()
    searcher.join(timeout=30)

    assert answers[0].status_code == 200
    assert [hit["memory"] for hit in answers[0].json()["results"]] == [
        "Alice plays the cello on Sundays"
    ]
    assert slow_model.loads == 1  # the search waited for the server's load, not a load of its own
    ready = readiness_after_load(server)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_a_model_that_fails_to_load_has_a_stable_code_and_loads_once_it_can(
    start_server: Callable[..., RunningServer], slow_model: SlowModel
) -> None:
    slow_model.broken = True
    slow_model.release.set()
    server = start_server(embedder=SLOW)

    failed = readiness_after_load(server)
    assert (failed.status_code, failed.json()) == (
        503,
        {"status": "unavailable", "code": "embedder_error"},
    )
    answers: list[httpx.Response] = []
    search(server, answers)
    assert answers[0].status_code == 502
    assert answers[0].json()["error"]["code"] == "embedder_error"

    # The cause is gone: a later probe loads the model again, in the background.
    slow_model.broken = False
    deadline = time.monotonic() + 30
    with server.http() as anonymous:
        while anonymous.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the model was never loaded again"
            time.sleep(0.01)
    answers.clear()
    search(server, answers)
    assert answers[0].status_code == 200


def test_a_local_model_file_that_does_not_load(
    tmp_path: Path, start_server: Callable[..., RunningServer]
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    model, tokenizer = tmp_path / "broken.onnx", tmp_path / "tokenizer.json"
    model.write_bytes(b"not an onnx model")
    tokenizer.write_text("{}")
    options: dict[str, Any] = {"model_path": model, "tokenizer_path": tokenizer}
    server = start_server(embedder="local", **options)

    failed = readiness_after_load(server)
    assert (failed.status_code, failed.json()) == (
        503,
        {"status": "unavailable", "code": "embedder_error"},
    )
    answers: list[httpx.Response] = []
    search(server, answers)
    assert answers[0].status_code == 502
    assert answers[0].json()["error"]["code"] == "embedder_error"
    assert str(model) not in answers[0].text  # the message names no local path
