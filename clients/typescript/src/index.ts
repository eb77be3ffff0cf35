/**
 * memvault's REST API from TypeScript: the methods of the Python `Client`, with the same names
 * (`get_all`, `erase_user`, ...) and the same snake_case option names, so memvault's docs apply
 * to both. No runtime dependency: requests go through the global `fetch` (Node 20+, browsers).
 *
 * What each method sends and how it reads the answer mirrors src/memvault/remote.py. Every
 * failure is thrown as a `MemvaultError` with a stable `code`: the server's own error, or one
 * made here for an answer no memvault server gives (a redirect, which is never followed so the
 * API key goes nowhere else; a body that is not JSON; an answer of the wrong shape).
 */

// --- values sent ------------------------------------------------------------------------------

export type Metadata = Record<string, unknown>;
/** mem0's filter grammar (see memvault's README): `{"user_id": "alice", "AND": [...]}`. */
export type Filters = Record<string, unknown>;
export type SearchMode = "hybrid" | "vector" | "bm25";
export type SecretPolicy = "redact" | "reject" | "allow";
export type JobStatus = "queued" | "running" | "done" | "failed" | "dead";
export type DeliveryStatus = "pending" | "sending" | "delivered" | "dead";

export interface Message {
  role: string;
  content: string;
}

export interface ScopeOptions {
  user_id?: string;
  agent_id?: string;
  run_id?: string;
}

export interface AddOptions extends ScopeOptions {
  metadata?: Metadata;
  memory_type?: string;
  /** ISO 8601 text, or a Date (sent as ISO 8601). */
  expiration_date?: string | Date;
  /** Extract facts with the server's LLM; with its queue on, the add is queued as a job. */
  infer?: boolean;
  actor_id?: string;
  importance?: number;
}

/** One item of `add_many`: `add`'s arguments as one object. */
export interface AddItem extends AddOptions {
  messages: string | Message | Message[];
}

export interface AddManyOptions {
  /** Items per request (at most 1,000, the route's limit; larger values send 1,000). */
  batch_size?: number;
  /** Told after each stored request: items done so far, and the total. */
  on_progress?: (done: number, total: number) => void;
}

export interface SearchOptions extends ScopeOptions {
  filters?: Filters;
  top_k?: number;
  threshold?: number;
  explain?: boolean;
  mode?: SearchMode;
}

export interface ListOptions extends ScopeOptions {
  filters?: Filters;
  /** Rows per page, 1 to 1,000 (default 100). */
  top_k?: number;
  /** Rows skipped (default 0). */
  offset?: number;
}

export interface CountOptions extends ScopeOptions {
  filters?: Filters;
}

export interface EntitiesOptions extends ScopeOptions {
  /** How many entities at most, 1 to 1,000 (default 100). */
  limit?: number;
}

export interface RelatedOptions {
  /** How many memories at most, 1 to 1,000 (default 10). */
  limit?: number;
}

export interface UpdateOptions {
  /** mem0's name for `text`. */
  data?: string;
}

export interface JobOptions {
  /** Only a job of this user: another user's job is `not_found`. */
  user_id?: string;
}

export interface JobsOptions {
  status?: JobStatus;
  user_id?: string;
  limit?: number;
}

export interface ConfigureWebhookOptions {
  /** Add the memory's text to memory.added and memory.updated events (default false). */
  include_text?: boolean;
}

export interface WebhookDeliveriesOptions {
  status?: DeliveryStatus;
  limit?: number;
}

export interface ConfigureNamespaceOptions {
  secret_policy?: SecretPolicy;
  /** Seconds; `null` clears the default TTL, absent keeps it. */
  default_ttl_seconds?: number | null;
  extraction_instructions?: string;
  reconciliation_instructions?: string;
}

export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:8765` (a path prefix is kept). */
  baseUrl: string;
  /** `mvk_...`: sent as `Authorization: Bearer`, to this server only. */
  apiKey: string;
  /** How long a request may wait for its answer (for `export_user`, for each part of the
   * stream), in milliseconds; default 30,000. */
  timeoutMs?: number;
  /** A `fetch` to use instead of the global one (tests, instrumentation). */
  fetch?: typeof fetch;
}

// --- values answered --------------------------------------------------------------------------

export interface MemoryItem {
  id: string;
  memory: string;
  metadata: Metadata;
  user_id: string | null;
  agent_id: string | null;
  run_id: string | null;
  actor_id: string | null;
  role: string | null;
  memory_type: string;
  created_at: string;
  updated_at: string;
  expires_at: string | null;
  importance: number | null;
  access_count: number;
  last_accessed_at: string | null;
  /** Search results only. */
  score?: number;
  /** Search with `explain: true` only. */
  explain?: Record<string, number | null>;
}

/** A memory sharing entities with another (`related`). */
export interface RelatedItem extends MemoryItem {
  /** The share of the other memory's entity weight this one shares, in [0, 1]. */
  score: number;
  /** The shared names, as the other memory writes them. */
  entities: string[];
}

/** An entity a scope's memories name, and how many live memories name it. */
export interface NamedEntity {
  name: string;
  memories: number;
}

export interface AddResult {
  id: string;
  memory: string;
  event: "ADD" | "NONE";
  redactions?: string[] | null;
}

export interface AddAnswer {
  results: AddResult[];
  /** A queued `infer` add: `results` is empty; follow the job with `job(id)`. */
  job?: { id: string; status: "queued" };
}

export interface HistoryEvent {
  id: string;
  memory_id: string;
  event: "ADD" | "UPDATE" | "DELETE" | "NONE";
  old_memory: string | null;
  new_memory: string | null;
  user_id: string | null;
  agent_id: string | null;
  run_id: string | null;
  actor_id: string | null;
  role: string | null;
  created_at: string;
  is_deleted: boolean;
}

export interface UpdateAnswer {
  message: string;
  result: MemoryItem;
}

export interface DeleteAnswer {
  message: string;
  id: string;
}

export interface DeleteAllAnswer {
  message: string;
  deleted: number;
}

export interface EraseAnswer {
  user_id: string;
  namespace: string;
  memories_deleted: number;
  history_deleted: number;
  jobs_deleted: number;
  data_key_destroyed: boolean;
}

export interface RotateAnswer {
  user_id: string;
  namespace: string;
  memories_rekeyed: number;
  history_rekeyed: number;
  jobs_rekeyed: number;
  key_scope: string;
}

export interface Job {
  id: string;
  kind: string;
  status: JobStatus;
  user_id: string | null;
  agent_id: string | null;
  run_id: string | null;
  attempts: number;
  max_attempts: number;
  error_code: string | null;
  result: Record<string, unknown> | null;
  created_at: string;
  updated_at: string;
}

export interface NamespaceRules {
  secret_policy: SecretPolicy;
  default_ttl_seconds: number | null;
  extraction_instructions?: string | null;
  reconciliation_instructions?: string | null;
}

export interface Webhook {
  url: string;
  include_text: boolean;
  created_at: string;
  updated_at: string;
  /** The signing secret: only in the answer that made it (a new webhook, a rotation). */
  secret?: string;
  /** While a rotated secret still signs beside the new one: when it stops. */
  previous_secret_expires_at?: string;
}

export interface RotateWebhookSecretOptions {
  /** How long the old secret goes on signing beside the new one, up to 7 days (default 0). */
  overlap_seconds?: number;
}

export interface WebhookDelivery {
  id: string;
  event: "memory.added" | "memory.updated" | "memory.deleted" | "user.erased";
  memory_id: string | null;
  user_id: string | null;
  status: DeliveryStatus;
  attempts: number;
  max_attempts: number;
  next_attempt_at: string | null;
  last_error: string | null;
  last_status: number | null;
  created_at: string;
  updated_at: string;
}

export interface NamespaceInfo {
  name: string;
  memories: number;
  keys: number;
}

/** One line of an export: `type` is `export` (the header), `memory`, or `history`. */
export interface ExportLine {
  type: string;
  [field: string]: unknown;
}

// --- errors -----------------------------------------------------------------------------------

/**
 * Every failure of a call. `code` is memvault's stable error code (`not_found`, `forbidden`,
 * `unauthorized`, `rate_limited`, `invalid_input`, ...: docs/rest.md), or, when no answer came,
 * `unreachable` (the connection failed) or `timeout`. `status` is the HTTP status, or null when
 * there was no answer or the client refused the call before sending it. `retryAfter` is the
 * seconds to wait for `rate_limited`, else null.
 */
export class MemvaultError extends Error {
  readonly code: string;
  readonly status: number | null;
  readonly retryAfter: number | null;

  constructor(
    code: string,
    message: string,
    status: number | null = null,
    retryAfter: number | null = null,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "MemvaultError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function notOurs(what: string, status: number | null = null): MemvaultError {
  return new MemvaultError(
    "internal",
    `the server sent ${what}: not a memvault server's answer`,
    status,
  );
}

/** Seconds to wait: the header's delay-seconds, else 1 (an HTTP date, or anything else a server
 * or proxy sends, is not read as a number of seconds). */
function retryAfterSeconds(header: string | null): number {
  const text = (header ?? "").trim();
  return /^[0-9]{1,9}$/.test(text) ? Math.max(1, Number(text)) : 1;
}

async function errorOf(response: Response): Promise<MemvaultError> {
  const status = response.status;
  let body: unknown;
  try {
    body = JSON.parse(await response.text());
  } catch {
    body = undefined;
  }
  const detail = isObject(body) ? body["error"] : undefined;
  if (!isObject(detail) || typeof detail["code"] !== "string" || typeof detail["message"] !== "string") {
    // No error body: /readyz answers a bare 503 when a store does not answer.
    if (status === 503) return new MemvaultError("storage_error", "the server's stores do not answer", status);
    return new MemvaultError("internal", `HTTP ${status}`, status);
  }
  const code = detail["code"];
  const retryAfter = code === "rate_limited" ? retryAfterSeconds(response.headers.get("Retry-After")) : null;
  return new MemvaultError(code, detail["message"], status, retryAfter);
}

// --- reading answers --------------------------------------------------------------------------

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An object, else the error of an answer of the wrong shape. */
function object(value: unknown): JsonObject {
  if (!isObject(value)) throw notOurs("an answer of the wrong shape (not an object)");
  return value;
}

/** A list of objects, else the error of an answer of the wrong shape. */
function objects(value: unknown): JsonObject[] {
  if (!Array.isArray(value) || !value.every(isObject)) {
    throw notOurs("an answer of the wrong shape (not a list of objects)");
  }
  return value;
}

function integer(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw notOurs("an answer of the wrong shape (not a count)");
  }
  return value;
}

/** The server lists absent `score`/`explain` as null; the Python clients omit them. */
function stripNulls(item: JsonObject): MemoryItem {
  const copy: JsonObject = { ...item };
  for (const key of ["score", "explain"]) if (copy[key] === null) delete copy[key];
  return copy as unknown as MemoryItem;
}

// --- paths ------------------------------------------------------------------------------------

/** Every byte but A-Z a-z 0-9 `-` `_` `~` escaped, dots as `%2E` too: the same segment Python's
 * `quote(value, safe="").replace(".", "%2E")` writes. */
function escaped(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*.]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** One path segment for a server-made id (memory, job). Ids that are empty, a dot-segment or hold
 * "/" can never be one, and are refused without a request, so no URL parser (or proxy) on the way
 * can read the id as anything but one segment. */
function segment(value: unknown, what: string): string {
  if (typeof value !== "string") throw new MemvaultError("invalid_input", "an id is a string");
  if (value === "" || value === "." || value === ".." || value.includes("/")) {
    throw new MemvaultError("not_found", `no ${what} has this id`);
  }
  return escaped(value);
}

function memoryPath(memoryId: unknown, ...rest: string[]): string {
  return ["/v1/memories", segment(memoryId, "memory"), ...rest, ""].join("/");
}

const WEBHOOK = "/v1/namespace/webhook/";

function jobPath(jobId: unknown, ...rest: string[]): string {
  return ["/v1/jobs", segment(jobId, "job"), ...rest].join("/");
}

/** `/v1/users/{user_id}/[rest/]` for any stored user id, every reserved byte escaped. */
function userPath(userId: unknown, ...rest: string[]): string {
  if (typeof userId !== "string") throw new MemvaultError("invalid_input", "user_id must be a string");
  if (userId === "." || userId === "..") {
    // fetch's URL parser (WHATWG) folds %2E and %2E%2E as it folds "." and "..": no escape keeps
    // such a segment, so the request would reach another route.
    throw new MemvaultError(
      "invalid_input",
      'user ids "." and ".." cannot be sent in a URL by fetch: use the Python client or the CLI',
    );
  }
  return ["/v1/users", escaped(userId), ...rest, ""].join("/");
}

// --- bodies -----------------------------------------------------------------------------------

/** The values that are not undefined or null: an absent field is the server's default. */
function present(values: JsonObject): JsonObject {
  const body: JsonObject = {};
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && value !== null) body[key] = value;
  }
  return body;
}

const ADD_FIELDS = [
  "messages",
  "user_id",
  "agent_id",
  "run_id",
  "metadata",
  "memory_type",
  "expiration_date",
  "infer",
  "actor_id",
  "importance",
] as const;

/** An add's arguments as the route's body: a single message object becomes a list of one (the
 * route takes a text or a list), a Date ISO 8601. Unknown fields are sent along, so the server
 * names them in its refusal rather than this client dropping them unseen. */
function addBody(item: unknown): JsonObject {
  if (!isObject(item)) {
    throw new MemvaultError("invalid_input", "each item must be an object with add()'s arguments");
  }
  const body = present({ ...item, infer: item["infer"] ?? false });
  const messages = body["messages"];
  if (isObject(messages)) body["messages"] = [messages];
  const expires = body["expiration_date"];
  if (expires instanceof Date) body["expiration_date"] = expires.toISOString();
  return body;
}

function scopeOf(options: ScopeOptions & { filters?: Filters }): JsonObject {
  const body = present({ user_id: options.user_id, agent_id: options.agent_id, run_id: options.run_id });
  if (options.filters !== undefined && options.filters !== null) body["filters"] = options.filters;
  return body;
}

// The most items one request may carry (POST /v1/memories/batch/) or a page may hold.
const MAX_PER_REQUEST = 1000;
const DEFAULT_BATCH_SIZE = 100;

function checkTopK(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_PER_REQUEST) {
    throw new MemvaultError("invalid_input", `top_k must be an integer from 1 to ${MAX_PER_REQUEST}`);
  }
  return value;
}

function checkOffset(value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new MemvaultError("invalid_input", "offset must be a non-negative integer");
  }
  return value;
}

// --- the client -------------------------------------------------------------------------------

interface Call {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  json?: unknown;
  params?: Record<string, string | number | undefined>;
}

/** A deadline that can be pushed back (each part of a stream gets `timeoutMs` again). */
class Deadline {
  readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly ms: number) {
    this.renew();
  }

  renew(): void {
    this.clear();
    this.timer = setTimeout(() => this.controller.abort(), this.ms);
  }

  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  get expired(): boolean {
    return this.controller.signal.aborted;
  }
}

export class MemvaultClient {
  private readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions) {
    if (!isObject(options) || typeof options.baseUrl !== "string" || typeof options.apiKey !== "string") {
      throw new MemvaultError("invalid_input", "MemvaultClient needs { baseUrl, apiKey } strings");
    }
    let base: URL;
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw new MemvaultError("invalid_input", "baseUrl must be an absolute http(s) URL");
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new MemvaultError("invalid_input", "baseUrl must be an absolute http(s) URL");
    }
    const timeoutMs = options.timeoutMs ?? 30_000;
    if (typeof timeoutMs !== "number" || !(timeoutMs > 0)) {
      throw new MemvaultError("invalid_input", "timeoutMs must be a positive number");
    }
    // Paths are appended to the base as text: a URL parser would drop its own path prefix.
    this.baseUrl = `${base.origin}${base.pathname.replace(/\/+$/, "")}`;
    this.apiKey = options.apiKey;
    this.timeoutMs = timeoutMs;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== "function") {
      throw new MemvaultError("invalid_config", "no fetch: use Node 20 or later, or pass { fetch }");
    }
    // Called unbound, a browser's fetch throws "Illegal invocation".
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  // --- sending ---

  /** The answer's head, once it is a 2xx: an error answer throws its memvault error; a
   * redirect (never followed, so the key goes nowhere else) or any other status an `internal`
   * one. The deadline stays armed for reading the body. */
  private async open(call: Call, deadline: Deadline): Promise<Response> {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(call.params ?? {})) {
      if (value !== undefined) query.set(key, String(value));
    }
    const search = query.toString();
    const url = `${this.baseUrl}${call.path}${search ? `?${search}` : ""}`;
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.apiKey}`,
      Accept: "application/json",
    };
    if (call.json !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
    try {
      response = await this.fetchImpl(url, {
        method: call.method,
        headers,
        body: call.json === undefined ? undefined : JSON.stringify(call.json),
        redirect: "manual",
        signal: deadline.controller.signal,
      });
    } catch (failed) {
      throw this.transportError(failed, deadline);
    }
    if (response.status >= 400) {
      try {
        throw await errorOf(response);
      } catch (failed) {
        if (failed instanceof MemvaultError) throw failed;
        throw this.transportError(failed, deadline);
      }
    }
    if (response.status < 200 || response.status >= 300) {
      // A browser's manual redirect is an "opaqueredirect" of status 0.
      await response.body?.cancel().catch(() => undefined);
      throw notOurs(`HTTP ${response.status || "redirect"}`, response.status || null);
    }
    return response;
  }

  private transportError(failed: unknown, deadline: Deadline): MemvaultError {
    if (failed instanceof MemvaultError) return failed;
    if (deadline.expired) {
      return new MemvaultError("timeout", `no answer within ${this.timeoutMs} ms`, null, null, failed);
    }
    return new MemvaultError("unreachable", "the server could not be reached", null, null, failed);
  }

  /** One call: its answer's JSON. */
  private async send(call: Call): Promise<unknown> {
    const deadline = new Deadline(this.timeoutMs);
    try {
      const response = await this.open(call, deadline);
      let text: string;
      try {
        text = await response.text();
      } catch (failed) {
        throw this.transportError(failed, deadline);
      }
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw notOurs("a body that is not JSON", response.status);
      }
    } finally {
      deadline.clear();
    }
  }

  // --- memories ---

  /** `POST /v1/memories/`. A queued `infer` add (202) answers `{results: [], job: {id, status}}`. */
  async add(messages: string | Message | Message[], options: AddOptions = {}): Promise<AddAnswer> {
    const json = addBody({ ...options, messages });
    const answer = object(await this.send({ method: "POST", path: "/v1/memories/", json }));
    if ("job_id" in answer) {
      return { results: [], job: { id: String(answer["job_id"]), status: "queued" } };
    }
    return { ...answer, results: objects(answer["results"]) } as unknown as AddAnswer;
  }

  /** `POST /v1/memories/batch/`, `batch_size` items per request. Each request is checked whole
   * and stored in one transaction; a refused batch leaves the earlier ones stored
   * (`on_progress(done, total)` told which). */
  async add_many(items: AddItem[], options: AddManyOptions = {}): Promise<{ results: AddResult[] }> {
    const batchSize = options.batch_size ?? DEFAULT_BATCH_SIZE;
    if (typeof batchSize !== "number" || !Number.isInteger(batchSize) || batchSize < 1) {
      throw new MemvaultError("invalid_input", "batch_size must be a positive integer");
    }
    const onProgress = options.on_progress;
    if (onProgress !== undefined && typeof onProgress !== "function") {
      throw new MemvaultError("invalid_input", "on_progress must be a function of (done, total)");
    }
    if (!Array.isArray(items)) {
      throw new MemvaultError("invalid_input", "items must be a list of objects with add()'s arguments");
    }
    const bodies = items.map(addBody);
    const size = Math.min(batchSize, MAX_PER_REQUEST);
    const results: AddResult[] = [];
    for (let start = 0; start < bodies.length; start += size) {
      const answer = object(
        await this.send({
          method: "POST",
          path: "/v1/memories/batch/",
          json: { items: bodies.slice(start, start + size) },
        }),
      );
      results.push(...(objects(answer["results"]) as unknown as AddResult[]));
      onProgress?.(Math.min(start + size, bodies.length), bodies.length);
    }
    return { results };
  }

  /** `POST /v1/memories/search/`. */
  async search(query: string, options: SearchOptions = {}): Promise<{ results: MemoryItem[] }> {
    const body = {
      query,
      ...scopeOf(options),
      ...present({ threshold: options.threshold }),
      top_k: options.top_k ?? 10,
      explain: options.explain ?? false,
      mode: options.mode ?? "hybrid",
    };
    const answer = object(await this.send({ method: "POST", path: "/v1/memories/search/", json: body }));
    return { results: objects(answer["results"]).map(stripNulls) };
  }

  /** `GET /v1/memories/{id}/`; null for an id the key cannot see. */
  async get(memory_id: string): Promise<MemoryItem | null> {
    try {
      return stripNulls(object(await this.send({ method: "GET", path: memoryPath(memory_id) })));
    } catch (failed) {
      if (failed instanceof MemvaultError && failed.code === "not_found") return null;
      throw failed;
    }
  }

  /** `top_k` rows after `offset` and the total, from the list route's pages of `top_k`: an
   * offset that is not a multiple of `top_k` spans two pages (two requests, so a write between
   * them may shift the rows, as between two pages). */
  private async page(options: ListOptions): Promise<[MemoryItem[], number]> {
    const topK = checkTopK(options.top_k ?? 100);
    const offset = checkOffset(options.offset ?? 0);
    const page = Math.floor(offset / topK);
    const skip = offset % topK;
    const body = { ...scopeOf(options), page: page + 1, page_size: topK };
    const first = object(await this.send({ method: "POST", path: "/v1/memories/list/", json: body }));
    const found = objects(first["results"]).slice(skip);
    const total = integer(first["count"]);
    if (skip && first["next"] !== null && first["next"] !== undefined) {
      const second = object(
        await this.send({ method: "POST", path: "/v1/memories/list/", json: { ...body, page: page + 2 } }),
      );
      found.push(...objects(second["results"]).slice(0, topK - found.length));
    }
    return [found.map(stripNulls), total];
  }

  /** `POST /v1/memories/list/`: the scope's memories, newest first. */
  async get_all(options: ListOptions = {}): Promise<{ results: MemoryItem[] }> {
    const [results] = await this.page(options);
    return { results };
  }

  /** `POST /v1/memories/list/`: `get_all`'s page and `count`'s total, as `[rows, total]`. */
  async get_page(options: ListOptions = {}): Promise<[MemoryItem[], number]> {
    return this.page(options);
  }

  /** The `count` of `POST /v1/memories/list/` (one row is read along). */
  async count(options: CountOptions = {}): Promise<number> {
    const [, total] = await this.page({ ...options, top_k: 1, offset: 0 });
    return total;
  }

  /** `GET /v1/memories/{id}/history/`; `[]` for an id the key cannot see. */
  async history(memory_id: string): Promise<HistoryEvent[]> {
    try {
      const answer = await this.send({ method: "GET", path: memoryPath(memory_id, "history") });
      return objects(answer) as unknown as HistoryEvent[];
    } catch (failed) {
      if (failed instanceof MemvaultError && failed.code === "not_found") return [];
      throw failed;
    }
  }

  /** `GET /v1/memories/{id}/related/`: memories of the same scope that name the same people,
   * places, things, dates or titles, best first; `not_found` for an id the key cannot see. */
  async related(memory_id: string, options: RelatedOptions = {}): Promise<{ results: RelatedItem[] }> {
    const params = { limit: options.limit ?? 10 };
    const answer = object(await this.send({ method: "GET", path: memoryPath(memory_id, "related"), params }));
    return { results: objects(answer["results"]).map(stripNulls) as unknown as RelatedItem[] };
  }

  /** `GET /v1/entities/names/`: the entities the scope's memories name, the most named first. */
  async entities(options: EntitiesOptions = {}): Promise<{ results: NamedEntity[] }> {
    const params = {
      user_id: options.user_id,
      agent_id: options.agent_id,
      run_id: options.run_id,
      limit: options.limit ?? 100,
    };
    const answer = object(await this.send({ method: "GET", path: "/v1/entities/names/", params }));
    return { results: objects(answer["results"]) as unknown as NamedEntity[] };
  }

  /** `PUT /v1/memories/{id}/`: a new text, new metadata, or both (`data` is mem0's `text`). */
  async update(
    memory_id: string,
    text?: string | null,
    metadata?: Metadata | null,
    options: UpdateOptions = {},
  ): Promise<UpdateAnswer> {
    const path = memoryPath(memory_id);
    const body = present({ text: text ?? options.data, metadata });
    const answer = object(await this.send({ method: "PUT", path, json: body }));
    return { ...answer, result: stripNulls(object(answer["result"])) } as unknown as UpdateAnswer;
  }

  /** `DELETE /v1/memories/{id}/`. */
  async delete(memory_id: string): Promise<DeleteAnswer> {
    const path = memoryPath(memory_id);
    return object(await this.send({ method: "DELETE", path })) as unknown as DeleteAnswer;
  }

  /** `DELETE /v1/memories/?user_id=...`: every memory of a scope. */
  async delete_all(options: ScopeOptions = {}): Promise<DeleteAllAnswer> {
    const params = { user_id: options.user_id, agent_id: options.agent_id, run_id: options.run_id };
    const answer = await this.send({ method: "DELETE", path: "/v1/memories/", params });
    return object(answer) as unknown as DeleteAllAnswer;
  }

  // --- a user's rights, the namespace's rules ---

  /** `DELETE /v1/users/{user_id}/`: crypto-shredding; `not_found` for an unknown user. */
  async erase_user(user_id: string): Promise<EraseAnswer> {
    const path = userPath(user_id);
    return object(await this.send({ method: "DELETE", path })) as unknown as EraseAnswer;
  }

  /** `GET /v1/users/{user_id}/export/`, streamed: the `await` throws `not_found` for an unknown
   * user; then `for await (const line of ...)` reads the lines as they arrive. Read them all (or
   * leave the loop early, which closes the stream) to free the connection. */
  async export_user(user_id: string): Promise<AsyncGenerator<ExportLine, void, undefined>> {
    const deadline = new Deadline(this.timeoutMs);
    let response: Response;
    try {
      response = await this.open({ method: "GET", path: userPath(user_id, "export") }, deadline);
    } finally {
      // Re-armed for each read of the stream only: the caller's own time between lines (or
      // before the first) is not the server's.
      deadline.clear();
    }
    return this.lines(response, deadline);
  }

  private async *lines(response: Response, deadline: Deadline): AsyncGenerator<ExportLine, void, undefined> {
    const body = response.body;
    if (body === null) {
      deadline.clear();
      return;
    }
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    try {
      for (;;) {
        deadline.renew();
        let part: ReadableStreamReadResult<string>;
        try {
          part = await reader.read();
        } catch (failed) {
          throw this.transportError(failed, deadline);
        } finally {
          deadline.clear();
        }
        if (part.done) break;
        pending += part.value;
        const complete = pending.split("\n");
        pending = complete.pop() ?? "";
        for (const line of complete) if (line.trim()) yield exportLine(line);
      }
      if (pending.trim()) yield exportLine(pending);
    } finally {
      deadline.clear();
      await reader.cancel().catch(() => undefined);
    }
  }

  /** `POST /v1/users/{user_id}/rotate-key/` (admin). */
  async rotate_user_key(user_id: string): Promise<RotateAnswer> {
    const path = userPath(user_id, "rotate-key");
    return object(await this.send({ method: "POST", path })) as unknown as RotateAnswer;
  }

  /** `GET /v1/namespace/settings/` (admin): the key's namespace's rules. */
  async namespace_settings(): Promise<NamespaceRules> {
    const answer = await this.send({ method: "GET", path: "/v1/namespace/settings/" });
    return object(answer) as unknown as NamespaceRules;
  }

  /** `PUT /v1/namespace/settings/` (admin): `default_ttl_seconds: null` clears the default TTL;
   * left out it is kept. */
  async configure_namespace(options: ConfigureNamespaceOptions = {}): Promise<NamespaceRules> {
    const body = present({
      secret_policy: options.secret_policy,
      extraction_instructions: options.extraction_instructions,
      reconciliation_instructions: options.reconciliation_instructions,
    });
    if (options.default_ttl_seconds === null) body["clear_default_ttl"] = true;
    else if (options.default_ttl_seconds !== undefined) {
      body["default_ttl_seconds"] = options.default_ttl_seconds;
    }
    const answer = await this.send({ method: "PUT", path: "/v1/namespace/settings/", json: body });
    return object(answer) as unknown as NamespaceRules;
  }

  /** `GET /v1/namespaces/` (admin): an operator's key lists every namespace, another its own. */
  async namespaces(): Promise<NamespaceInfo[]> {
    return objects(await this.send({ method: "GET", path: "/v1/namespaces/" })) as unknown as NamespaceInfo[];
  }

  // --- the job queue ---

  /** `GET /v1/jobs/{id}`; with `user_id`, only a job of that user (else `not_found`). */
  async job(job_id: string, options: JobOptions = {}): Promise<Job> {
    const answer = object(await this.send({ method: "GET", path: jobPath(job_id) }));
    if (options.user_id !== undefined && answer["user_id"] !== options.user_id) {
      throw new MemvaultError("not_found", "no such job in this namespace");
    }
    return answer as unknown as Job;
  }

  /** `GET /v1/jobs/?status=&user_id=&limit=`: newest first. */
  async jobs(options: JobsOptions = {}): Promise<{ results: Job[] }> {
    const params = { status: options.status, user_id: options.user_id, limit: options.limit ?? 100 };
    const answer = object(await this.send({ method: "GET", path: "/v1/jobs/", params }));
    return { ...answer, results: objects(answer["results"]) as unknown as Job[] };
  }

  /** `POST /v1/jobs/{id}/retry`; with `user_id`, only a job of that user. */
  async retry_job(job_id: string, options: JobOptions = {}): Promise<Job> {
    const path = jobPath(job_id, "retry");
    if (options.user_id !== undefined) await this.job(job_id, options);
    return object(await this.send({ method: "POST", path })) as unknown as Job;
  }

  // --- webhooks ---

  /** `PUT /v1/namespace/webhook/` (admin): a new webhook's `secret` is in this answer only. */
  async configure_webhook(url: string, options: ConfigureWebhookOptions = {}): Promise<Webhook> {
    const json = { url, include_text: options.include_text ?? false };
    const answer = await this.send({ method: "PUT", path: WEBHOOK, json });
    return object(answer) as unknown as Webhook;
  }

  /** `GET /v1/namespace/webhook/` (admin): never the secret; `not_found` when there is none. */
  async webhook(): Promise<Webhook> {
    return object(await this.send({ method: "GET", path: WEBHOOK })) as unknown as Webhook;
  }

  /** `DELETE /v1/namespace/webhook/` (admin): undelivered events are dropped. */
  async remove_webhook(): Promise<{ deleted: boolean; deliveries_deleted: number }> {
    const answer = object(await this.send({ method: "DELETE", path: WEBHOOK }));
    return answer as unknown as { deleted: boolean; deliveries_deleted: number };
  }

  /** `POST /v1/namespace/webhook/rotate-secret` (admin): the new secret, in this answer only;
   * with `overlap_seconds` the old one goes on signing beside it for that long. */
  async rotate_webhook_secret(options: RotateWebhookSecretOptions = {}): Promise<Webhook> {
    const json = { overlap_seconds: options.overlap_seconds ?? 0 };
    const answer = await this.send({ method: "POST", path: `${WEBHOOK}rotate-secret`, json });
    return object(answer) as unknown as Webhook;
  }

  /** `GET /v1/namespace/webhook/deliveries/?status=&limit=` (admin): newest first. */
  async webhook_deliveries(
    options: WebhookDeliveriesOptions = {},
  ): Promise<{ results: WebhookDelivery[] }> {
    const params = { status: options.status, limit: options.limit ?? 100 };
    const path = `${WEBHOOK}deliveries/`;
    const answer = object(await this.send({ method: "GET", path, params }));
    return { ...answer, results: objects(answer["results"]) as unknown as WebhookDelivery[] };
  }

  /** `POST /v1/namespace/webhook/deliveries/{id}/retry` (admin): a dead delivery sent again. */
  async retry_webhook_delivery(delivery_id: string): Promise<WebhookDelivery> {
    const path = [`${WEBHOOK}deliveries`, segment(delivery_id, "delivery"), "retry"].join("/");
    return object(await this.send({ method: "POST", path })) as unknown as WebhookDelivery;
  }

  // --- operations ---

  /** `GET /readyz`: throws `storage_error` when the server's stores do not answer. */
  async ping(): Promise<void> {
    await this.send({ method: "GET", path: "/readyz" });
  }
}

/** One line of an export: a JSON object, else an `internal` error. */
function exportLine(line: string): ExportLine {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw notOurs("an export line that is not JSON");
  }
  if (!isObject(value) || typeof value["type"] !== "string") {
    throw notOurs("an export line that is not an object");
  }
  return value as ExportLine;
}
