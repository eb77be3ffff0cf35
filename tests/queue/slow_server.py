"""A real ``memvault serve`` whose jobs take a while: run as a script by test_crash.py.

The handler is set in code here, by the program that builds the app (``create_app``'s
``job_handler``): nothing in a request or a setting can name code to run. Each call appends the
job's message to ``QUEUE_TEST_LOG`` before it sleeps, so the test counts invocations.
"""

from __future__ import annotations

import os
import time
from typing import Any

import uvicorn

from memvault import Memory, Settings
from memvault.server import create_app
from memvault.server.run import uvicorn_options


def slow(payload: dict[str, Any]) -> dict[str, Any]:
    with open(os.environ["QUEUE_TEST_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{payload['messages']}\n")
        log.flush()
        os.fsync(log.fileno())
    time.sleep(float(os.environ.get("QUEUE_TEST_DELAY", "0.3")))
    return {"results": [], "done": payload["messages"]}


def main() -> None:
    settings = Settings.load()
    memory = Memory(settings=settings)
    app = create_app(settings, memory, job_handler=slow)
    uvicorn.run(app, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
