"""Search expansion over REST (#18): a server with ``expand_seeds`` on returns the link fields of
``explain`` (strings among them) through its response schema, to the Python client too."""

from __future__ import annotations

from collections.abc import Callable

from memvault import Client

from .conftest import RunningServer


def test_rest_explain_names_the_link(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(expand_seeds=1, expand_per_seed=2, expand_weight=1.0, context_window=0)
    texts = ["filler one remark", "filler two remark", "zebra crossing", "filler three remark"]
    with Client(server.base_url, server.key("write")) as client:
        added = client.add_many([{"messages": text, "user_id": "u"} for text in texts])
        ids = [item["id"] for item in added["results"]]
        hits = client.search("zebra", user_id="u", top_k=4, explain=True)["results"]
    assert hits[0]["id"] == ids[2]
    linked = {hit["id"]: hit["explain"] for hit in hits if "link_source" in hit["explain"]}
    assert set(linked) == {ids[1], ids[3]}
    assert linked[ids[3]]["linked_from"] == ids[2]
    assert linked[ids[3]]["link_source"] == "conversation"
    assert linked[ids[3]]["link_reason"] == "written just after it in the same conversation"
    assert isinstance(linked[ids[3]]["link_rank"], int)
