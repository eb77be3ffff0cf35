"""The dashboard at /ui, over HTTP against the ASGI app: sessions, CSRF, CSP, roles, expiry.

Time is an injected clock (``create_app(clock=...)``), moved by the tests: nothing sleeps. The
browser tests (tests/e2e/test_dashboard_browser.py) drive the same pages in Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog.testing
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from memvault import HashEmbedder, Memory, Settings
from memvault.server import create_app
from memvault.server.auth import Require
from memvault.server.ui.session import COOKIE

from .test_auth_matrix import all_routes

BASE = "http://127.0.0.1"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
_LOGIN = re.compile(r'name="login_token" value="([0-9a-f]+)"')


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Dash:
    app: object
    memory: Memory
    clock: Clock
    admin: str
    alice_id: str
    bob_id: str

    def client(self, base_url: str = BASE) -> TestClient:
        return TestClient(self.app, base_url=base_url)  # type: ignore[arg-type]


@pytest.fixture
def dash(home: Path) -> Iterator[Dash]:
    settings = Settings.load(home=home, embedder="hash", job_workers=0)
    memory = Memory(settings=settings, embedder=HashEmbedder())
    alice = memory.add("Alice drinks green tea every morning", user_id="alice")["results"][0]
    bob = memory.add("Bob plays chess on Sundays", user_id="bob")["results"][0]
    admin = memory.api_keys.create("default", "admin", name="admin").key
    clock = Clock()
    app = create_app(settings, memory, clock=clock)
    yield Dash(app, memory, clock, admin, alice["id"], bob["id"])
    memory.close()


def sign_in(client: TestClient, key: str) -> httpx.Response:
    form = client.get("/ui/login")
    token = _LOGIN.search(form.text)
    assert token is not None
    return client.post(
        "/ui/login",
        data={"login_token": token.group(1), "api_key": key, "next": "/ui/memories"},
        follow_redirects=False,
    )


def session_cookie(answer: httpx.Response) -> str:
    found = [c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}=")]
    assert len(found) == 1
    return found[0]


def csrf_of(client: TestClient, path: str = "/ui/overview") -> str:
    found = _CSRF.search(client.get(path).text)
    assert found is not None
    return found.group(1)


def signed_in(dash: Dash, key: str, base_url: str = BASE) -> TestClient:
    client = dash.client(base_url)
    assert sign_in(client, key).status_code == 303
    return client


def text_of(memory: Memory, memory_id: str) -> str:
    found = memory.get(memory_id)
    assert found is not None
    return str(found["memory"])


# --- every dashboard route, written out by hand: the action each needs ---------------------

UI_ROUTES = {
    ("GET", "/ui"): "memories.read",
    ("GET", "/ui/memories"): "memories.read",
    ("GET", "/ui/memories/{memory_id}"): "memories.read",
    ("POST", "/ui/memories/{memory_id}/edit"): "memories.write",
    ("POST", "/ui/memories/{memory_id}/delete"): "memories.write",
    ("GET", "/ui/keys"): "keys.list",
    ("POST", "/ui/keys"): "keys.manage",
    ("POST", "/ui/keys/{key_id}/revoke"): "keys.manage",
    ("GET", "/ui/users"): "users.export",
    ("GET", "/ui/users/{user_id}/export"): "users.export",
    ("POST", "/ui/users/{user_id}/erase"): "users.erase",
    ("GET", "/ui/audit"): "audit.read",
    ("GET", "/ui/jobs"): "jobs.read",
    ("POST", "/ui/jobs/{job_id}/retry"): "jobs.write",
    ("GET", "/ui/overview"): "memories.read",
    # Public: they check their own form tokens (and sign-in passes the REST gate).
    ("GET", "/ui/login"): None,
    ("POST", "/ui/login"): None,
    ("POST", "/ui/logout"): None,
}


def test_every_dashboard_route_declares_the_action_written_here(dash: Dash) -> None:
    found = {}
    for route in all_routes(dash.app.routes):  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.path.startswith("/ui"):
            actions = [
                str(d.call.action)
                for d in route.dependant.dependencies
                if isinstance(d.call, Require)
            ]
            assert len(actions) <= 1, route.path
            for method in route.methods:
                found[(method, route.path_format)] = actions[0] if actions else None
    assert found == UI_ROUTES


def test_every_page_needs_a_session(dash: Dash) -> None:
    client = dash.client()
    for (method, template), action in UI_ROUTES.items():
        if action is None:
            continue
        path = template.format(memory_id=dash.alice_id, key_id="x", user_id="alice", job_id="j")
        answer = client.request(method, path, follow_redirects=False)
        assert answer.status_code == 303, (method, template)
        assert answer.headers["location"].startswith("/ui/login")
    # A bearer key does not open the dashboard: only a session does (and no cookie opens the API).
    answer = client.get(
        "/ui/overview", headers={"Authorization": f"Bearer {dash.admin}"}, follow_redirects=False
    )
    assert answer.status_code == 303
    signed = signed_in(dash, dash.admin)
    assert signed.get("/v1/memories/?user_id=alice").status_code == 401  # nor a cookie the API
    cookie = {"Cookie": f"{COOKIE}={signed.cookies[COOKIE]}"}
    assert dash.client().get("/v1/memories/?user_id=alice", headers=cookie).status_code == 401


# --- the cookie -------------------------------------------------------------------------------


def test_the_session_cookie_is_httponly_samesite_strict_and_holds_no_key(dash: Dash) -> None:
    answer = sign_in(dash.client(), dash.admin)
    assert answer.status_code == 303
    cookie = session_cookie(answer)
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/ui" in attributes
    assert "secure" not in attributes  # plain HTTP on loopback: a Secure cookie would be lost
    value = cookie.split(";")[0].split("=", 1)[1]
    key_id = dash.admin.split("_")[1]
    assert dash.admin not in value and key_id not in value
    assert dash.admin.split("_")[2][:12] not in value


def test_the_session_cookie_is_secure_over_tls(dash: Dash) -> None:
    answer = sign_in(dash.client("https://127.0.0.1"), dash.admin)
    assert answer.status_code == 303
    attributes = [part.strip().lower() for part in session_cookie(answer).split(";")]
    assert "secure" in attributes


def test_the_cookies_are_secure_behind_a_tls_proxy_even_one_not_listed(dash: Dash) -> None:
    """A TLS proxy left out of ``forwarded_allow_ips``: the server sees plain HTTP, but the
    proxy's ``X-Forwarded-Proto: https`` still marks the cookies Secure (so a browser never
    sends them over plain HTTP to the host). Plain HTTP without it keeps working."""

    def attributes(cookie: str) -> list[str]:
        return [part.strip().lower() for part in cookie.split(";")]

    # The browser speaks HTTPS to the proxy, so it sends the Secure cookies back: here by hand
    # (the test client's jar, speaking plain HTTP, would rightly drop them).
    proxied = dash.client()
    proxied.headers["X-Forwarded-Proto"] = "https"
    form = proxied.get("/ui/login")
    (login_cookie,) = form.headers.get_list("set-cookie")
    assert "secure" in attributes(login_cookie)
    token = _LOGIN.search(form.text)
    assert token is not None
    proxied.cookies.clear()
    answer = proxied.post(
        "/ui/login",
        data={"login_token": token.group(1), "api_key": dash.admin},
        headers={"Cookie": login_cookie.split(";")[0]},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert all("secure" in attributes(c) for c in answer.headers.get_list("set-cookie"))
    assert "secure" in attributes(session_cookie(answer))
    plain = dash.client()
    answer = sign_in(plain, dash.admin)
    assert answer.status_code == 303
    assert "secure" not in attributes(session_cookie(answer))
    assert plain.get("/ui/overview").status_code == 200


def test_a_forged_or_edited_cookie_opens_nothing(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    sealed = client.cookies[COOKIE]
    edited = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    for value in (edited, "x" * 200, ""):
        other = dash.client()
        other.cookies.set(COOKIE, value, domain="127.0.0.1", path="/ui")
        answer = other.get("/ui/overview", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


def test_another_store_cannot_open_the_cookie(dash: Dash, tmp_path: Path) -> None:
    """The sealing key comes from this store's master key: another deployment's is different."""
    cookie = signed_in(dash, dash.admin).cookies[COOKIE]
    settings = Settings.load(home=tmp_path / "other", embedder="hash", job_workers=0)
    with Memory(settings=settings, embedder=HashEmbedder()) as other:
        other.api_keys.create("default", "admin")
        client = TestClient(create_app(settings, other, clock=dash.clock), base_url=BASE)
        client.cookies.set(COOKIE, cookie, domain="127.0.0.1", path="/ui")
        answer = client.get("/ui/overview", follow_redirects=False)
    assert answer.status_code == 303


def test_a_session_works_on_another_node_of_the_store(dash: Dash) -> None:
    """Nodes share the store, hence the sealing key: no sticky sessions are needed."""
    cookie = signed_in(dash, dash.admin).cookies[COOKIE]
    settings = dash.memory.settings
    with Memory(settings=settings, embedder=HashEmbedder()) as node:
        client = TestClient(create_app(settings, node, clock=dash.clock), base_url=BASE)
        client.cookies.set(COOKIE, cookie, domain="127.0.0.1", path="/ui")
        answer = client.get("/ui/memories?user_id=alice", follow_redirects=False)
    assert answer.status_code == 200 and "Alice drinks green tea" in answer.text


def test_a_wrong_key_is_refused_and_audited(dash: Dash) -> None:
    answer = sign_in(dash.client(), "mvk_aaaaaaaaaaaa_wrong")
    assert answer.status_code == 401
    assert COOKIE not in answer.headers.get("set-cookie", "")
    dash.memory.audit.flush()
    entries = dash.memory.audit.entries(None, limit=5)
    assert any(e["action"] == "POST /ui/login" and e["outcome"] == "unauthorized" for e in entries)


def test_sign_in_shares_the_address_lockout_and_never_records_the_key(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed sign-ins spend the REST API's per-address failure budget: once locked out, even
    the right key is refused there, and so are the address's REST calls and open sessions. The
    audit names the well-formed key id at most, never the secret."""
    settings = Settings.load(
        home=home, embedder="hash", job_workers=0, auth_failure_limit="3/minute"
    )
    memory = Memory(settings=settings, embedder=HashEmbedder())
    try:
        admin = memory.api_keys.create("default", "admin").key
        app = create_app(settings, memory, clock=Clock())
        open_session = TestClient(app, base_url=BASE)
        assert sign_in(open_session, admin).status_code == 303
        client = TestClient(app, base_url=BASE)
        wrong = [f"mvk_abcdefghjkmn_NotTheSecret{n}" for n in range(3)]
        with structlog.testing.capture_logs() as logged:
            assert [sign_in(client, key).status_code for key in wrong] == [401, 401, 401]
        refused = sign_in(client, admin)
        assert refused.status_code == 429 and COOKIE not in refused.headers.get("set-cookie", "")
        assert "too many failed authentications" in refused.text
        assert open_session.get("/ui/overview").status_code == 429
        bearer = {"Authorization": f"Bearer {admin}"}
        assert client.get("/v1/memories/?user_id=a", headers=bearer).status_code == 429
        memory.audit.flush()
        entries = [
            e for e in memory.audit.entries(None, limit=50) if e["action"] == "POST /ui/login"
        ]
        assert [e["outcome"] for e in entries] == ["lockout", "unauthorized", "unauthorized"]
        assert all(e["key_id"] == "abcdefghjkmn" for e in entries)
        assert "NotTheSecret" not in repr(memory.audit.entries(None, limit=50))
        # The access log saw the failed sign-ins, and neither it nor any other log has the key.
        assert [e["status"] for e in logged if e.get("route") == "/ui/login"] == [200, 401] * 3
        assert "NotTheSecret" not in repr(logged) + caplog.text
    finally:
        memory.close()


def test_the_sign_in_form_needs_its_own_token(dash: Dash) -> None:
    """Login CSRF: another site cannot sign a browser in under the attacker's key."""
    client = dash.client()
    answer = client.post(
        "/ui/login", data={"api_key": dash.admin, "login_token": "0" * 64}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert COOKIE not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/ui/../x", "javascript:alert(1)", "/ui/\\\\e.x"],
)
def test_sign_in_never_redirects_off_the_dashboard(dash: Dash, target: str) -> None:
    client = dash.client()
    token = _LOGIN.search(client.get("/ui/login").text)
    assert token is not None
    answer = client.post(
        "/ui/login",
        data={"login_token": token.group(1), "api_key": dash.admin, "next": target},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/ui/") and not location.startswith("//")
    assert ".." not in location or location == "/ui/memories"


# --- headers and pages --------------------------------------------------------------------------

PAGES = ["/ui/memories", "/ui/memories?user_id=alice&q=tea", "/ui/overview", "/ui/keys"]
PAGES += ["/ui/users?user_id=alice", "/ui/audit", "/ui/jobs", "/ui/login"]


def test_pages_have_a_strict_csp_and_no_inline_script_or_style(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    for path in [*PAGES, f"/ui/memories/{dash.alice_id}"]:
        answer = client.get(path)
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert answer.headers.get_list("content-security-policy") == [csp]
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers.get_list("referrer-policy") == ["same-origin"]
        html = answer.text
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, path
        assert re.search(r"\sstyle=", html) is None, path
        assert re.search(r"\son[a-z]+=", html) is None, path
        assert "localStorage" not in html and "http://" not in html.replace(
            'xmlns="http://www.w3.org/2000/svg"', ""
        )
    script = client.get("/ui/static/ui.js").text
    assert "localStorage" not in script and "sessionStorage" not in script


def test_every_ui_answer_has_a_csp_even_errors_404s_and_static_files(dash: Dash) -> None:
    """Answers no dashboard route rendered (a 404, a 405, a validation error, a static file)
    still carry a CSP: the API's ``default-src 'none'`` when the page set none of its own."""
    client = signed_in(dash, dash.admin)
    answers = [
        client.get("/ui/no-such-page"),
        client.get("/ui/memories?size=many"),
        client.put("/ui/keys"),
        client.get("/ui/static/ui.js"),
        client.get("/ui/static/no-such-file.js"),
        client.get("/ui/memories/%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
    ]
    for answer in answers:
        policies = answer.headers.get_list("content-security-policy")
        assert len(policies) == 1, answer.request.url
        assert "default-src 'none'" in policies[0] and "frame-ancestors 'none'" in policies[0]
        assert "unsafe-inline" not in policies[0]
        assert answer.headers["x-frame-options"] == "DENY"
    assert [a.status_code for a in answers] == [404, 422, 405, 200, 404, 404]
    assert "<script>alert(1)" not in answers[-1].text


def test_text_is_escaped(dash: Dash) -> None:
    made = dash.memory.add("<script>alert(1)</script> & <b>bold</b>", user_id="alice")
    client = signed_in(dash, dash.admin)
    html = client.get(f"/ui/memories/{made['results'][0]['id']}").text
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


# --- CSRF and forged requests -------------------------------------------------------------------


def test_a_post_without_the_csrf_token_changes_nothing(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    path = f"/ui/memories/{dash.alice_id}/edit"
    for form in ({"text": "forged"}, {"text": "forged", "csrf": "0" * 64}):
        assert client.post(path, data=form).status_code == 403
    answer = client.post(f"/ui/memories/{dash.alice_id}/delete", data={})
    assert answer.status_code == 403
    assert text_of(dash.memory, dash.alice_id) == "Alice drinks green tea every morning"


def test_a_post_from_another_site_is_refused_even_with_the_token(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    token = csrf_of(client)
    answer = client.post(
        f"/ui/memories/{dash.alice_id}/edit",
        data={"text": "forged", "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert text_of(dash.memory, dash.alice_id) == "Alice drinks green tea every morning"


def test_the_csrf_token_of_one_session_does_not_fit_another(dash: Dash) -> None:
    first = signed_in(dash, dash.admin)
    second = signed_in(dash, dash.admin)
    answer = second.post(
        f"/ui/memories/{dash.alice_id}/edit", data={"text": "x", "csrf": csrf_of(first)}
    )
    assert answer.status_code == 403


def test_a_memory_page_lists_related_memories_of_its_own_scope_only(dash: Dash) -> None:
    linked = dash.memory.add("Alice met Priya in Lisbon", user_id="alice")["results"][0]
    dash.memory.add("Priya moved to Lisbon", user_id="alice")
    dash.memory.add("Bob also met Priya in Lisbon", user_id="bob")
    dash.memory.add("<script>alert(1)</script> Priya", user_id="alice")
    client = signed_in(dash, dash.admin)
    page = client.get(f"/ui/memories/{linked['id']}").text
    related = page.split('id="related-title"', 1)[1].split("</section>", 1)[0]
    assert "Priya moved to Lisbon" in related and "Bob also met" not in related
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in related
    assert "Lisbon" in related and "Priya" in related  # the shared names
    bound = signed_in(dash, dash.memory.api_keys.create("default", "read", user_id="alice").key)
    assert "Priya moved to Lisbon" in bound.get(f"/ui/memories/{linked['id']}").text
    carol = dash.memory.add("Carol keeps bees", user_id="carol")["results"][0]
    assert "No other memory of this scope" in client.get(f"/ui/memories/{carol['id']}").text


def test_shared_entity_names_on_a_memory_page_are_escaped(dash: Dash) -> None:
    """An entity name is text from a memory (a quoted title here, or an LLM's answer): the
    "shares" line of the related list shows it escaped, never as markup."""
    title = '"X<img src=x onerror=alert(1)>"'
    seed = dash.memory.add(f"Alice read {title} twice", user_id="alice")["results"][0]
    dash.memory.add(f"Alice lent {title} to a friend", user_id="alice")
    page = signed_in(dash, dash.admin).get(f"/ui/memories/{seed['id']}").text
    related = page.split('id="related-title"', 1)[1].split("</section>", 1)[0]
    shares = related.split('class="hint">', 1)[1].split("</span>", 1)[0]
    assert "&lt;img src=x onerror=alert(1)&gt;" in shares
    assert "<img" not in page


def test_edit_and_delete_with_the_token(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    token = csrf_of(client)
    answer = client.post(
        f"/ui/memories/{dash.alice_id}/edit", data={"text": "Alice drinks oolong", "csrf": token}
    )
    assert answer.status_code == 200 and "Alice drinks oolong" in answer.text
    assert "Alice drinks green tea every morning" in answer.text  # the history's old text
    assert text_of(dash.memory, dash.alice_id) == "Alice drinks oolong"
    answer = client.post(f"/ui/memories/{dash.alice_id}/delete", data={"csrf": token})
    assert answer.status_code == 200 and "was deleted" in answer.text
    assert dash.memory.get(dash.alice_id) is None


# --- roles ------------------------------------------------------------------------------------


def test_a_read_key_sees_no_controls_and_its_forged_posts_are_refused(dash: Dash) -> None:
    reader = dash.memory.api_keys.create("default", "read").key
    client = signed_in(dash, reader)
    page = client.get(f"/ui/memories/{dash.alice_id}").text
    assert "/edit" not in page and "/delete" not in page
    assert 'href="/ui/keys"' not in page and 'href="/ui/audit"' not in page
    token = csrf_of(client)  # a valid token: the role alone must refuse
    forged = [
        (f"/ui/memories/{dash.alice_id}/edit", {"text": "forged"}),
        (f"/ui/memories/{dash.alice_id}/delete", {}),
        ("/ui/keys", {"role": "admin"}),
        ("/ui/users/alice/erase", {"confirm": "alice"}),
    ]
    for path, form in forged:
        assert client.post(path, data={**form, "csrf": token}).status_code == 403, path
    assert client.get("/ui/keys").status_code == 403
    assert client.get("/ui/audit").status_code == 403
    assert text_of(dash.memory, dash.alice_id) == "Alice drinks green tea every morning"
    assert len(dash.memory.api_keys.list("default")) == 2
    assert dash.memory.count(user_id="alice") == 1


def test_every_ui_post_refuses_a_read_key_with_or_without_a_token(dash: Dash) -> None:
    """Each state-changing route (from the hand-written list): a read key's POST is 403 with its
    own token, without one and with another session's; nothing changes."""
    from .test_auth_matrix import dead_job

    job_id = dead_job(dash.memory, 1)
    admin_key_id = dash.memory.api_keys.list("default")[0].id
    reader = signed_in(dash, dash.memory.api_keys.create("default", "read").key)
    other = signed_in(dash, dash.memory.api_keys.create("default", "read").key)
    tokens = [csrf_of(reader), None, csrf_of(other)]
    forms = {"text": "forged", "role": "admin", "confirm": "alice"}
    posts = [t for (method, t), action in UI_ROUTES.items() if method == "POST" and action]
    assert len(posts) == 6
    for template in posts:
        path = template.format(
            memory_id=dash.alice_id, key_id=admin_key_id, user_id="alice", job_id=job_id
        )
        for token in tokens:
            form = {**forms, "csrf": token} if token else forms
            answer = reader.post(path, data=form, follow_redirects=False)
            assert answer.status_code == 403, (path, token is None)
    assert text_of(dash.memory, dash.alice_id) == "Alice drinks green tea every morning"
    assert all(key.revoked_at is None for key in dash.memory.api_keys.list("default"))
    assert len(dash.memory.api_keys.list("default")) == 3
    assert dash.memory.count(user_id="alice") == 1
    assert dash.memory.job(job_id)["status"] == "dead"


def test_a_write_key_edits_but_may_not_manage_keys_or_erase(dash: Dash) -> None:
    writer = dash.memory.api_keys.create("default", "write").key
    client = signed_in(dash, writer)
    token = csrf_of(client)
    answer = client.post(
        f"/ui/memories/{dash.alice_id}/edit", data={"text": "edited", "csrf": token}
    )
    assert answer.status_code == 200
    assert client.post("/ui/keys", data={"role": "admin", "csrf": token}).status_code == 403
    erase = client.post("/ui/users/bob/erase", data={"confirm": "bob", "csrf": token})
    assert erase.status_code == 403
    assert dash.memory.count(user_id="bob") == 1


def test_a_user_bound_key_sees_only_its_user(dash: Dash) -> None:
    bound = dash.memory.api_keys.create("default", "write", user_id="alice").key
    client = signed_in(dash, bound)
    listed = client.get("/ui/memories").text
    assert "Alice drinks green tea" in listed and "Bob plays chess" not in listed
    assert "Bob plays chess" not in client.get("/ui/memories?q=chess").text
    assert client.get("/ui/memories?user_id=bob").status_code == 403
    assert client.get(f"/ui/memories/{dash.bob_id}").status_code == 404
    overview = client.get("/ui/overview").text
    assert "alice" in overview and "bob" not in overview
    assert client.get("/ui/users/bob/export").status_code == 403
    token = csrf_of(client)
    for path in (f"/ui/memories/{dash.bob_id}/edit", f"/ui/memories/{dash.bob_id}/delete"):
        assert client.post(path, data={"text": "x", "csrf": token}).status_code == 404
    erase = client.post("/ui/users/bob/erase", data={"confirm": "bob", "csrf": token})
    assert erase.status_code == 403
    assert text_of(dash.memory, dash.bob_id) == "Bob plays chess on Sundays"
    export = client.get("/ui/users/alice/export")
    assert export.status_code == 200 and "Alice drinks" in export.text


# --- session life -------------------------------------------------------------------------------


def test_a_session_ends_after_the_idle_time(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    idle = dash.app.state.settings.dashboard_idle_seconds  # type: ignore[attr-defined]
    dash.clock.now += idle - 5
    assert client.get("/ui/overview", follow_redirects=False).status_code == 200  # resealed
    dash.clock.now += idle - 5
    assert client.get("/ui/overview", follow_redirects=False).status_code == 200
    dash.clock.now += idle + 1
    answer = client.get("/ui/overview", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


def test_a_session_ends_after_its_lifetime_even_in_use(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    settings = dash.app.state.settings  # type: ignore[attr-defined]
    step = settings.dashboard_idle_seconds / 2
    used = 0.0
    while used + step < settings.dashboard_session_seconds:
        dash.clock.now += step
        used += step
        assert client.get("/ui/overview", follow_redirects=False).status_code == 200
    dash.clock.now += step
    assert client.get("/ui/overview", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions_at_once(dash: Dash) -> None:
    key = dash.memory.api_keys.create("default", "write")
    client = signed_in(dash, key.key)
    assert client.get("/ui/overview", follow_redirects=False).status_code == 200
    dash.memory.api_keys.revoke(key.info.id)
    answer = client.get("/ui/overview", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")


def test_sign_out_ends_the_session_even_for_a_copied_cookie(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    copied = client.cookies[COOKIE]
    answer = client.post("/ui/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert answer.status_code == 303
    assert COOKIE not in client.cookies
    thief = dash.client()
    thief.cookies.set(COOKIE, copied, domain="127.0.0.1", path="/ui")
    assert thief.get("/ui/overview", follow_redirects=False).status_code == 303


def test_sign_out_needs_the_csrf_token(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    assert client.post("/ui/logout", data={}).status_code == 403
    assert client.get("/ui/overview", follow_redirects=False).status_code == 200


# --- keys and users -------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_can_be_revoked(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    token = csrf_of(client)
    made = client.post("/ui/keys", data={"role": "read", "name": "laptop", "csrf": token})
    assert made.status_code == 201
    secret = re.search(r'value="(mvk_[^"]+)"', made.text)
    assert secret is not None
    assert dash.memory.api_keys.authenticate(secret.group(1)).role == "read"
    listing = client.get("/ui/keys").text
    assert secret.group(1) not in listing and "laptop" in listing
    key_id = secret.group(1).split("_")[1]
    answer = client.post(f"/ui/keys/{key_id}/revoke", data={"csrf": token})
    assert answer.status_code == 200
    revoked = [k for k in dash.memory.api_keys.list("default") if k.id == key_id]
    assert revoked[0].revoked_at is not None


def test_erasing_a_user_needs_the_typed_id(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    token = csrf_of(client)
    wrong = client.post("/ui/users/bob/erase", data={"confirm": "bo", "csrf": token})
    assert wrong.status_code == 422
    assert dash.memory.count(user_id="bob") == 1
    answer = client.post("/ui/users/bob/erase", data={"confirm": "bob", "csrf": token})
    assert answer.status_code == 200 and "was erased" in answer.text
    assert dash.memory.count(user_id="bob") == 0


def test_export_is_a_file_download(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    answer = client.get("/ui/users/alice/export")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert "Alice drinks green tea" in answer.text


def test_search_shows_the_score_parts(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    html = client.get("/ui/memories?user_id=alice&q=green+tea").text
    assert "Alice drinks green tea" in html
    assert "<dt>vector</dt>" in html and "<dt>bm25</dt>" in html


def test_listing_pages_through_a_scope(dash: Dash) -> None:
    for n in range(12):
        dash.memory.add(f"note number {n} about alice", user_id="alice")
    client = signed_in(dash, dash.admin)
    first = client.get("/ui/memories?user_id=alice&size=10").text
    assert "13 memories" in first and 'rel="next"' in first
    second = client.get("/ui/memories?user_id=alice&size=10&page=2").text
    assert 'rel="prev"' in second and 'rel="next"' not in second
    assert second.count('href="/ui/memories/') == 3


def test_audit_page_shows_the_chain_verification(dash: Dash) -> None:
    client = signed_in(dash, dash.admin)
    client.get("/ui/jobs")
    client.get("/ui/keys")
    html = client.get("/ui/audit").text
    assert "Chain verified" in html
    assert "GET /ui/jobs" in html and "GET /ui/keys" in html
    filtered = client.get("/ui/audit?outcome=ok&action=jobs").text
    assert "GET /ui/jobs" in filtered and "GET /ui/keys" not in filtered


def test_filters_by_metadata_type_and_date(dash: Dash) -> None:
    dash.memory.add("Alice's flight is on Friday", user_id="alice", metadata={"topic": "travel"})
    client = signed_in(dash, dash.admin)
    html = client.get("/ui/memories?user_id=alice&meta=topic%3Dtravel").text
    assert "flight is on Friday" in html and "green tea" not in html
    html = client.get("/ui/memories?user_id=alice&memory_type=episodic").text
    assert "0 memories" in html
    html = client.get("/ui/memories?user_id=alice&since=2999-01-01").text
    assert "0 memories" in html
    assert client.get("/ui/memories?user_id=alice&meta=nokey").status_code == 422


def test_a_dead_job_is_retried_from_the_jobs_page(dash: Dash) -> None:
    from .test_auth_matrix import dead_job

    job_id = dead_job(dash.memory, 1)
    client = signed_in(dash, dash.admin)
    page = client.get("/ui/jobs?status=dead").text
    assert job_id in page and f"/ui/jobs/{job_id}/retry" in page
    reader = signed_in(dash, dash.memory.api_keys.create("default", "read").key)
    assert f"/ui/jobs/{job_id}/retry" not in reader.get("/ui/jobs").text
    refused = reader.post(f"/ui/jobs/{job_id}/retry", data={"csrf": csrf_of(reader)})
    assert refused.status_code == 403
    answer = client.post(f"/ui/jobs/{job_id}/retry", data={"csrf": csrf_of(client)})
    assert answer.status_code == 200
    assert dash.memory.job(job_id)["status"] == "queued"
