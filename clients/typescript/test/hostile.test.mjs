// What MemvaultClient does with answers no memvault server gives (a proxy's, an attacker's), and
// the exact paths it sends: a tiny HTTP server on 127.0.0.1 answers and records each request.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import { MemvaultClient, MemvaultError } from "../dist/index.js";

/** The answer the server gives next: (request, response) => void. */
let answer = (_req, res) => res.end();
/** Each request it received: method, raw path (as sent on the wire), authorization. */
let seen = [];
let server;
let baseUrl;

before(async () => {
  server = createServer((req, res) => {
    seen.push({ method: req.method, path: req.url, authorization: req.headers.authorization });
    req.resume();
    req.on("end", () => answer(req, res));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

const client = (options = {}) => new MemvaultClient({ baseUrl, apiKey: "mvk_test", ...options });

function json(status, body, headers = {}) {
  return (_req, res) => {
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
}

function text(status, body, headers = {}) {
  return (_req, res) => {
    res.writeHead(status, { "Content-Type": "text/html", ...headers });
    res.end(body);
  };
}

async function failure(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof MemvaultError, `not a MemvaultError: ${error?.stack ?? error}`);
    return error;
  }
  assert.fail("the call did not fail");
}

/** Every method, called with harmless arguments. */
const CALLS = {
  add: (c) => c.add("a fact", { user_id: "alice" }),
  add_many: (c) => c.add_many([{ messages: "a fact", user_id: "alice" }]),
  search: (c) => c.search("q", { user_id: "alice" }),
  get: (c) => c.get("m1"),
  get_all: (c) => c.get_all({ user_id: "alice" }),
  get_page: (c) => c.get_page({ user_id: "alice", top_k: 10, offset: 5 }),
  count: (c) => c.count({ user_id: "alice" }),
  history: (c) => c.history("m1"),
  update: (c) => c.update("m1", "text"),
  delete: (c) => c.delete("m1"),
  delete_all: (c) => c.delete_all({ user_id: "alice" }),
  erase_user: (c) => c.erase_user("alice"),
  export_user: async (c) => {
    for await (const _ of await c.export_user("alice"));
  },
  rotate_user_key: (c) => c.rotate_user_key("alice"),
  job: (c) => c.job("j1"),
  jobs: (c) => c.jobs(),
  retry_job: (c) => c.retry_job("j1"),
  namespace_settings: (c) => c.namespace_settings(),
  configure_namespace: (c) => c.configure_namespace({ secret_policy: "redact" }),
  namespaces: (c) => c.namespaces(),
  ping: (c) => c.ping(),
};

const HOSTILE = {
  html_page: text(200, "<html>proxy login</html>"),
  empty_body: (_req, res) => res.end(),
  list: json(200, [1, 2, 3]),
  null: json(200, null),
  wrong_types: json(200, { results: 5, count: "many", next: {}, result: [], status: [] }),
  list_of_numbers: json(200, { results: [1, 2], count: 2, next: null }),
  redirect: text(307, "", { Location: "https://attacker.invalid/steal" }),
  error_not_json: text(500, "oops"),
  error_wrong_shape: json(400, { error: ["x"] }),
  export_line_not_json: text(200, '{"type": "export"}\nnot json\n'),
};

describe("hostile answers are MemvaultErrors, never TypeErrors", () => {
  for (const [name, hostile] of Object.entries(HOSTILE)) {
    test(name, async () => {
      answer = hostile;
      for (const [method, call] of Object.entries(CALLS)) {
        seen = [];
        try {
          await call(client());
        } catch (error) {
          // A correct-looking answer may pass (ping takes any JSON); anything else must be ours.
          assert.ok(error instanceof MemvaultError, `${method}: ${error?.stack ?? error}`);
        }
        assert.ok(seen.every((r) => r.authorization === "Bearer mvk_test"), method);
      }
    });
  }

  test("a redirect is not followed and is an internal error with its status", async () => {
    let elsewhere = 0;
    const other = createServer((_req, res) => {
      elsewhere += 1;
      res.end("{}");
    });
    await new Promise((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      for (const status of [301, 302, 303, 307, 308]) {
        answer = text(status, "", { Location: `http://127.0.0.1:${other.address().port}/v1/memories/` });
        const error = await failure(client().get_all({ user_id: "alice" }));
        assert.equal(error.code, "internal");
        assert.equal(error.status, status);
        assert.match(error.message, /not a memvault server's answer/);
        const exported = await failure(client().export_user("alice"));
        assert.equal(exported.status, status);
      }
      assert.equal(elsewhere, 0, "the API key went nowhere else");
    } finally {
      other.closeAllConnections();
      other.close();
    }
  });

  test("a body that is not JSON is an internal error", async () => {
    answer = text(200, "<html>proxy login</html>");
    const error = await failure(client().search("q", { user_id: "alice" }));
    assert.equal(error.code, "internal");
    assert.match(error.message, /not JSON/);
  });

  test("an answer of the wrong shape is an internal error", async () => {
    answer = json(200, { results: "nope" });
    assert.equal((await failure(client().search("q", { user_id: "alice" }))).code, "internal");
    answer = json(200, { results: [], count: "many", next: null });
    assert.equal((await failure(client().count({ user_id: "alice" }))).code, "internal");
    answer = json(200, [{ id: "x" }, 3]);
    assert.equal((await failure(client().history("m1"))).code, "internal");
  });

  test("an export line that is not a JSON object is an internal error after the good ones", async () => {
    answer = text(200, '{"type": "export", "user_id": "alice"}\n[1]\n');
    const lines = [];
    const error = await failure(
      (async () => {
        for await (const line of await client().export_user("alice")) lines.push(line);
      })(),
    );
    assert.deepEqual(lines, [{ type: "export", user_id: "alice" }]);
    assert.equal(error.code, "internal");
  });

  test("export lines split across chunks are read whole", async () => {
    answer = (_req, res) => {
      res.writeHead(200, { "Content-Type": "application/x-ndjson" });
      res.write('{"type": "exp');
      setTimeout(() => res.end('ort"}\n{"type": "memory", "memory": "é 日本"}'), 20);
    };
    const lines = [];
    for await (const line of await client().export_user("alice")) lines.push(line);
    assert.deepEqual(lines, [{ type: "export" }, { type: "memory", memory: "é 日本" }]);
  });

  test("an export's timeout is the server's silence, not the caller's time between lines", async () => {
    const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    answer = text(200, '{"type": "export"}\n{"type": "memory"}\n');
    const c = client({ timeoutMs: 100 });
    const stream = await c.export_user("alice");
    await wait(250); // before the first line
    const lines = [];
    for await (const line of stream) {
      lines.push(line.type);
      await wait(250); // between lines
    }
    assert.deepEqual(lines, ["export", "memory"]);

    let silent;
    answer = (_req, res) => {
      silent = res;
      res.writeHead(200, { "Content-Type": "application/x-ndjson" });
      res.write('{"type": "export"}\n'); // then silence
    };
    const stalled = [];
    const error = await failure(
      (async () => {
        for await (const line of await c.export_user("alice")) stalled.push(line.type);
      })(),
    );
    assert.deepEqual(stalled, ["export"]);
    assert.deepEqual([error.code, error.status], ["timeout", null]);
    silent.destroy();
  });

  test("the server's error body gives code, status and message", async () => {
    answer = json(404, { error: { code: "not_found", message: "no memory m1" }, detail: "no memory m1" });
    const error = await failure(client().delete("m1"));
    assert.deepEqual([error.code, error.status, error.message, error.retryAfter], ["not_found", 404, "no memory m1", null]);
    answer = json(422, { error: { code: "invalid_filter", message: "bad" } });
    assert.equal((await failure(client().search("q", { filters: { x: { nope: 1 } } }))).code, "invalid_filter");
  });

  test("rate_limited carries Retry-After in seconds, else 1", async () => {
    for (const [header, seconds] of [["7", 7], ["0", 1], ["Wed, 21 Oct 2015 07:28:00 GMT", 1], ["9".repeat(5000), 1]]) {
      answer = json(429, { error: { code: "rate_limited", message: "slow down" } }, { "Retry-After": header });
      const error = await failure(client().count({ user_id: "alice" }));
      assert.equal(error.code, "rate_limited");
      assert.equal(error.retryAfter, seconds, header.slice(0, 20));
    }
  });

  test("a bare 503 is storage_error; another error without a body is internal", async () => {
    answer = text(503, "");
    assert.equal((await failure(client().ping())).code, "storage_error");
    answer = text(502, "bad gateway");
    const error = await failure(client().ping());
    assert.deepEqual([error.code, error.status], ["internal", 502]);
  });

  test("no answer in time is a timeout; no server is unreachable", async () => {
    let silent;
    answer = (_req, res) => {
      silent = res; // never answers
    };
    const late = await failure(client({ timeoutMs: 100 }).count({ user_id: "alice" }));
    assert.deepEqual([late.code, late.status], ["timeout", null]);
    silent.destroy();

    const probe = createServer();
    await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = probe.address().port;
    await new Promise((resolve) => probe.close(resolve));
    const down = new MemvaultClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "k" });
    assert.equal((await failure(down.ping())).code, "unreachable");
  });
});

describe("ids are sent as one path segment", () => {
  test("memory and job ids: escaped, dots too; impossible ids never sent", async () => {
    answer = json(404, { error: { code: "not_found", message: "no" } });
    seen = [];
    const c = client();
    for (const id of ["../keys", "..", ".", "", "a/b", "x?y#z", "%2e%2e", "%2F", "a.b", "?", "#", "it's (1)*!~"]) {
      assert.equal(await c.get(id), null);
      assert.deepEqual(await c.history(id), []);
      assert.equal((await failure(c.delete(id))).code, "not_found");
      assert.equal((await failure(c.update(id, "text"))).code, "not_found");
      assert.equal((await failure(c.job(id))).code, "not_found");
    }
    const paths = seen.map((r) => r.path);
    const memories = paths.filter((p) => p.startsWith("/v1/memories/"));
    for (const path of memories) {
      const parts = path.split("/");
      assert.ok(parts.length === 5 || (parts.length === 6 && parts[4] === "history"), path);
      assert.ok(!["", ".", ".."].includes(parts[3]), path);
    }
    for (const expected of ["/v1/memories/x%3Fy%23z/", "/v1/memories/%252e%252e/history/", "/v1/memories/%252F/", "/v1/memories/a%2Eb/", "/v1/memories/%3F/", "/v1/memories/%23/", "/v1/memories/it%27s%20%281%29%2A%21~/"]) {
      assert.ok(memories.includes(expected), `${expected} not in ${memories}`);
    }
    const jobs = paths.filter((p) => p.startsWith("/v1/jobs/"));
    assert.deepEqual(jobs, ["/v1/jobs/x%3Fy%23z", "/v1/jobs/%252e%252e", "/v1/jobs/%252F", "/v1/jobs/a%2Eb", "/v1/jobs/%3F", "/v1/jobs/%23", "/v1/jobs/it%27s%20%281%29%2A%21~"]);
  });

  test("user ids: every reserved byte escaped, slash and dots too", async () => {
    answer = json(404, { error: { code: "not_found", message: "no" } });
    seen = [];
    const c = client();
    for (const id of ["../keys", "a/b", "x?y#z", "%2e%2e", "a.b", "ends/export", "..a"]) {
      assert.equal((await failure(c.erase_user(id))).code, "not_found");
      assert.equal((await failure(c.export_user(id))).code, "not_found");
      assert.equal((await failure(c.rotate_user_key(id))).code, "not_found");
    }
    const paths = seen.map((r) => r.path);
    for (const expected of ["/v1/users/%2E%2E%2Fkeys/", "/v1/users/a%2Fb/export/", "/v1/users/x%3Fy%23z/rotate-key/", "/v1/users/%252e%252e/", "/v1/users/a%2Eb/export/", "/v1/users/ends%2Fexport/", "/v1/users/%2E%2Ea/"]) {
      assert.ok(paths.includes(expected), `${expected} not in ${paths}`);
    }
    assert.ok(paths.every((p) => p.split("/").length === 5 || p.split("/").length === 6), paths.join(" "));
  });

  test('user ids "." and ".." are refused before any request (fetch would fold them)', async () => {
    seen = [];
    for (const id of [".", ".."]) {
      const error = await failure(client().erase_user(id));
      assert.deepEqual([error.code, error.status], ["invalid_input", null]);
      assert.equal((await failure(client().export_user(id))).code, "invalid_input");
    }
    assert.deepEqual(seen, []);
  });

  test("query parameters are encoded, and a base URL's path prefix is kept", async () => {
    answer = json(200, { message: "ok", deleted: 0 });
    seen = [];
    const prefixed = new MemvaultClient({ baseUrl: `${baseUrl}/memvault/`, apiKey: "mvk_test" });
    await prefixed.delete_all({ user_id: "a&b=c d" });
    assert.deepEqual(seen.map((r) => [r.method, r.path]), [["DELETE", "/memvault/v1/memories/?user_id=a%26b%3Dc+d"]]);
  });

  test("options are checked before any request", async () => {
    seen = [];
    const c = client();
    for (const [call, code] of [
      [() => c.get_all({ top_k: 1001 }), "invalid_input"],
      [() => c.get_page({ offset: -1 }), "invalid_input"],
      [() => c.add_many([{ messages: "x" }], { batch_size: 0 }), "invalid_input"],
      [() => c.add_many("not a list"), "invalid_input"],
      [() => c.get(42), "invalid_input"],
    ]) {
      assert.equal((await failure(call())).code, code);
    }
    assert.throws(() => new MemvaultClient({ baseUrl: "not a url", apiKey: "k" }), MemvaultError);
    assert.throws(() => new MemvaultClient({ baseUrl: "file:///etc", apiKey: "k" }), MemvaultError);
    assert.deepEqual(seen, []);
  });
});
