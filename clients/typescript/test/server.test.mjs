// MemvaultClient against a real `memvault serve`, started by tests/e2e/test_typescript_client.py,
// which passes its address and keys in the environment:
//   MEMVAULT_TEST_URL        the server, http://127.0.0.1:<port>
//   MEMVAULT_TEST_ADMIN_KEY  an admin key of the default namespace
//   MEMVAULT_TEST_READ_KEY   a read key of the default namespace
//   MEMVAULT_TEST_USER       a user id, and MEMVAULT_TEST_USER_KEY a write key bound to it
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { MemvaultClient, MemvaultError } from "../dist/index.js";

const env = process.env;
const NEEDED = ["MEMVAULT_TEST_URL", "MEMVAULT_TEST_ADMIN_KEY", "MEMVAULT_TEST_READ_KEY", "MEMVAULT_TEST_USER", "MEMVAULT_TEST_USER_KEY"];
const missing = NEEDED.filter((name) => !env[name]);
const skip = missing.length ? `needs a running server: set ${missing.join(", ")}` : false;

const client = (apiKey) => new MemvaultClient({ baseUrl: env.MEMVAULT_TEST_URL, apiKey, timeoutMs: 20_000 });
const admin = () => client(env.MEMVAULT_TEST_ADMIN_KEY);
/** A user id no other test uses (they share one server). */
const fresh = (name) => `${name}-${randomUUID().slice(0, 8)}`;

/** The MemvaultError `promise` rejects with (anything else fails the test). */
async function failure(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof MemvaultError, `not a MemvaultError: ${error}`);
    return error;
  }
  assert.fail("the call did not fail");
}

async function collect(iterator) {
  const lines = [];
  for await (const line of iterator) lines.push(line);
  return lines;
}

describe("against memvault serve", { skip }, () => {
  test("ping answers when the stores do", async () => {
    assert.equal(await admin().ping(), undefined);
  });

  test("add, search, get, update, history, delete", async () => {
    const m = admin();
    const user_id = fresh("alice");
    const added = await m.add("Alice is allergic to peanuts", { user_id, metadata: { source: "ts" } });
    assert.equal(added.results.length, 1);
    const [{ id, event, memory }] = added.results;
    assert.equal(event, "ADD");
    assert.equal(memory, "Alice is allergic to peanuts");

    const found = await m.search("peanuts allergy", { user_id, top_k: 5, explain: true });
    assert.equal(found.results[0].id, id);
    assert.equal(typeof found.results[0].score, "number");
    assert.equal(typeof found.results[0].explain, "object");

    const item = await m.get(id);
    assert.equal(item.memory, "Alice is allergic to peanuts");
    assert.deepEqual(item.metadata, { source: "ts" });
    assert.equal(item.user_id, user_id);
    assert.ok(!("score" in item), "get() leaves out the null score, as the Python client does");

    const updated = await m.update(id, "Alice is allergic to tree nuts");
    assert.equal(updated.result.memory, "Alice is allergic to tree nuts");
    const relabelled = await m.update(id, null, { source: "ts", checked: true });
    assert.equal(relabelled.result.memory, "Alice is allergic to tree nuts");
    assert.deepEqual(relabelled.result.metadata, { source: "ts", checked: true });
    const viaData = await m.update(id, undefined, undefined, { data: "Alice avoids nuts" });
    assert.equal(viaData.result.memory, "Alice avoids nuts");

    const events = await m.history(id);
    assert.deepEqual(events.map((e) => e.event), ["ADD", "UPDATE", "UPDATE", "UPDATE"]);
    assert.equal(events[1].old_memory, "Alice is allergic to peanuts");
    assert.equal(events[1].new_memory, "Alice is allergic to tree nuts");

    const deleted = await m.delete(id);
    assert.equal(deleted.id, id);
    assert.equal(await m.get(id), null);
    assert.equal((await m.search("nuts", { user_id })).results.length, 0);
    const gone = await failure(m.delete(id));
    assert.equal(gone.code, "not_found");
    assert.equal(gone.status, 404);
  });

  test("entities and related memories", async () => {
    const m = admin();
    const user_id = fresh("eve");
    const first = (await m.add("Eve moved to Lisbon in May 2023.", { user_id })).results[0].id;
    const second = (await m.add("Eve loves the Lisbon trams.", { user_id })).results[0].id;
    await m.add("Nothing to link here.", { user_id });
    const related = await m.related(first, { limit: 5 });
    assert.deepEqual(related.results.map((r) => r.id), [second]);
    assert.deepEqual(related.results[0].entities, ["Eve", "Lisbon"]);
    assert.ok(related.results[0].score > 0 && related.results[0].score <= 1);
    const named = await m.entities({ user_id, limit: 2 });
    assert.deepEqual(named.results, [
      { name: "Eve", memories: 2 },
      { name: "Lisbon", memories: 2 },
    ]);
    assert.equal((await failure(m.entities())).code, "missing_scope");
    assert.equal((await failure(client(env.MEMVAULT_TEST_USER_KEY).related(first))).code, "not_found");
  });

  test("add_many in batches, get_all pages, get_page and count", async () => {
    const m = admin();
    const user_id = fresh("pager");
    const progress = [];
    const items = Array.from({ length: 5 }, (_, i) => ({ messages: `fact number ${i}`, user_id, metadata: { n: i } }));
    const added = await m.add_many(items, { batch_size: 2, on_progress: (done, total) => progress.push([done, total]) });
    assert.equal(added.results.length, 5);
    assert.deepEqual(progress, [[2, 5], [4, 5], [5, 5]]);

    assert.equal(await m.count({ user_id }), 5);
    assert.equal(await m.count({ user_id: fresh("nobody") }), 0);
    const all = (await m.get_all({ user_id })).results.map((r) => r.id);
    assert.deepEqual(new Set(all), new Set(added.results.map((r) => r.id)));
    const pages = [];
    for (const offset of [0, 2, 4]) pages.push(...(await m.get_all({ user_id, top_k: 2, offset })).results.map((r) => r.id));
    assert.deepEqual(pages, all, "pages of 2 read every row once, newest first");
    // An offset that is not a multiple of top_k spans two of the server's pages.
    const [rows, total] = await m.get_page({ user_id, top_k: 3, offset: 1 });
    assert.deepEqual(rows.map((r) => r.id), all.slice(1, 4));
    assert.equal(total, 5);
    const filtered = await m.get_all({ filters: { user_id, n: 3 } });
    assert.deepEqual(filtered.results.map((r) => r.memory), ["fact number 3"]);

    const refused = await failure(m.get_all({ user_id, top_k: 0 }));
    assert.equal(refused.code, "invalid_input");
    assert.equal(refused.status, null, "refused before any request");

    const removed = await m.delete_all({ user_id });
    assert.equal(removed.deleted, 5);
    assert.equal(await m.count({ user_id }), 0);
  });

  test("export_user streams JSON lines; erase_user shreds the user", async () => {
    const m = admin();
    const user_id = fresh("exported");
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await m.add(`exported fact ${i}`, { user_id })).results[0].id);
    const lines = await collect(await m.export_user(user_id));
    assert.equal(lines[0].type, "export");
    assert.equal(lines[0].user_id, user_id);
    const memories = lines.filter((line) => line.type === "memory");
    assert.deepEqual(new Set(memories.map((line) => line.id)), new Set(ids));

    // Leaving the loop early closes the stream; the client stays usable.
    for await (const line of await m.export_user(user_id)) {
      assert.equal(line.type, "export");
      break;
    }

    const erased = await m.erase_user(user_id);
    assert.equal(erased.memories_deleted, 3);
    assert.equal(erased.data_key_destroyed, true);
    assert.equal(await m.count({ user_id }), 0);
    const unknown = await failure(m.export_user(user_id));
    assert.equal(unknown.code, "not_found");
    assert.equal((await failure(m.erase_user(user_id))).status, 404);
  });

  test("the admin calls: rotate_user_key, namespace_settings, configure_namespace, namespaces, jobs", async () => {
    const m = admin();
    const user_id = fresh("rotated");
    const { id } = (await m.add("a fact to re-encrypt", { user_id })).results[0];
    const rotated = await m.rotate_user_key(user_id);
    assert.equal(rotated.memories_rekeyed, 1);
    assert.equal((await m.get(id)).memory, "a fact to re-encrypt");

    const rules = await m.namespace_settings();
    assert.ok(["redact", "reject", "allow"].includes(rules.secret_policy));
    // Setting the namespace's own policy again changes nothing for the other tests.
    assert.equal((await m.configure_namespace({ secret_policy: rules.secret_policy })).secret_policy, rules.secret_policy);
    assert.ok((await m.namespaces()).some((ns) => ns.name === "default"));
    assert.ok(Array.isArray((await m.jobs({ limit: 5 })).results));
    assert.equal((await failure(m.job("no-such-job"))).code, "not_found");
    await m.erase_user(user_id);
  });

  test("the webhook calls: the server's allow-list is empty, so webhooks are off", async () => {
    const m = admin();
    assert.equal((await failure(m.webhook())).code, "not_found");
    const refused = await failure(m.configure_webhook("https://hooks.example.com/in", { include_text: true }));
    assert.equal(refused.code, "destination_refused");
    assert.deepEqual((await m.webhook_deliveries({ status: "dead", limit: 5 })).results, []);
    assert.equal((await failure(m.rotate_webhook_secret())).code, "not_found");
    assert.equal((await failure(m.rotate_webhook_secret({ overlap_seconds: 3600 }))).code, "not_found");
    assert.equal((await failure(m.rotate_webhook_secret({ overlap_seconds: -1 }))).code, "invalid_input");
    assert.equal((await failure(m.remove_webhook())).code, "not_found");
    assert.equal((await failure(m.retry_webhook_delivery("no-such-delivery"))).code, "not_found");
    assert.equal((await failure(m.retry_webhook_delivery(".."))).code, "not_found");
  });

  test("a key bound to a user cannot see another user", async () => {
    const own = env.MEMVAULT_TEST_USER;
    const bound = client(env.MEMVAULT_TEST_USER_KEY);
    const other = fresh("bob");
    const theirs = (await admin().add("Bob's secret plan", { user_id: other })).results[0].id;

    const mine = (await bound.add("my own fact")).results[0].id; // user_id filled in by the server
    assert.equal((await bound.get(mine)).user_id, own);
    assert.equal(await bound.get(theirs), null, "another user's memory is not found (404)");
    assert.deepEqual(await bound.history(theirs), []);
    assert.equal((await failure(bound.delete(theirs))).status, 404);
    const search = await failure(bound.search("plan", { user_id: other }));
    assert.equal(search.code, "forbidden");
    assert.equal(search.status, 403);
    assert.equal((await failure(bound.export_user(other))).code, "forbidden");
    assert.equal((await failure(bound.erase_user(other))).code, "forbidden");
    assert.equal((await admin().get(theirs)).memory, "Bob's secret plan");
    await admin().erase_user(other);
  });

  test("a read key may read but not write", async () => {
    const refused = await failure(client(env.MEMVAULT_TEST_READ_KEY).add("a fact", { user_id: fresh("r") }));
    assert.equal(refused.code, "forbidden");
    assert.equal(refused.status, 403);
  });

  test("a wrong key is a MemvaultError with the server's code", async () => {
    const wrong = client("mvk_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    const error = await failure(wrong.count({ user_id: "anyone" }));
    assert.equal(error.code, "unauthorized");
    assert.equal(error.status, 401);
    assert.equal(error.retryAfter, null);
    assert.equal(error.name, "MemvaultError");
    assert.ok(error instanceof Error && error.message.length > 0);
  });

  test("hostile user ids stay one path segment: each reaches its own user only", async () => {
    const m = admin();
    const tag = randomUUID().slice(0, 8);
    const hostile = [`../${tag}`, `${tag}/..`, `a%2F${tag}`, `${tag}?x=1`, `${tag}#frag`, `${tag}/export`, `..${tag}`];
    // Users whose ids a wrongly split path would reach instead.
    const decoys = [tag, `a/${tag}`];
    for (const user_id of [...hostile, ...decoys]) await m.add(`the fact of ${user_id}`, { user_id });
    for (const user_id of hostile) {
      const lines = await collect(await m.export_user(user_id));
      assert.equal(lines[0].user_id, user_id);
      assert.deepEqual(lines.filter((l) => l.type === "memory").map((l) => l.memory), [`the fact of ${user_id}`]);
      assert.equal((await m.rotate_user_key(user_id)).user_id, user_id);
      assert.equal((await m.erase_user(user_id)).memories_deleted, 1);
    }
    for (const user_id of decoys) {
      assert.equal(await m.count({ user_id }), 1, `${user_id} was not touched`);
      await m.erase_user(user_id);
    }
    // Memory ids are the server's: one that cannot be one is not found, without a request.
    for (const memory_id of ["..", ".", "", "../keys", "a/b"]) {
      assert.equal(await m.get(memory_id), null);
      assert.deepEqual(await m.history(memory_id), []);
      assert.equal((await failure(m.delete(memory_id))).code, "not_found");
    }
    for (const memory_id of ["%2F", "?", "#", "%2e%2e", "a.b"]) {
      assert.equal(await m.get(memory_id), null, memory_id);
      assert.equal((await failure(m.update(memory_id, "x"))).status, 404, memory_id);
    }
  });
});
