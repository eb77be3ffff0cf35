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
    job?: {
        id: string;
        status: "queued";
    };
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
/**
 * Every failure of a call. `code` is memvault's stable error code (`not_found`, `forbidden`,
 * `unauthorized`, `rate_limited`, `invalid_input`, ...: docs/rest.md), or, when no answer came,
 * `unreachable` (the connection failed) or `timeout`. `status` is the HTTP status, or null when
 * there was no answer or the client refused the call before sending it. `retryAfter` is the
 * seconds to wait for `rate_limited`, else null.
 */
export declare class MemvaultError extends Error {
    readonly code: string;
    readonly status: number | null;
    readonly retryAfter: number | null;
    constructor(code: string, message: string, status?: number | null, retryAfter?: number | null, cause?: unknown);
}
export declare class MemvaultClient {
    private readonly baseUrl;
    private readonly apiKey;
    private readonly timeoutMs;
    private readonly fetchImpl;
    constructor(options: ClientOptions);
    /** The answer's head, once it is a 2xx: an error answer throws its memvault error; a
     * redirect (never followed, so the key goes nowhere else) or any other status an `internal`
     * one. The deadline stays armed for reading the body. */
    private open;
    private transportError;
    /** One call: its answer's JSON. */
    private send;
    /** `POST /v1/memories/`. A queued `infer` add (202) answers `{results: [], job: {id, status}}`. */
    add(messages: string | Message | Message[], options?: AddOptions): Promise<AddAnswer>;
    /** `POST /v1/memories/batch/`, `batch_size` items per request. Each request is checked whole
     * and stored in one transaction; a refused batch leaves the earlier ones stored
     * (`on_progress(done, total)` told which). */
    add_many(items: AddItem[], options?: AddManyOptions): Promise<{
        results: AddResult[];
    }>;
    /** `POST /v1/memories/search/`. */
    search(query: string, options?: SearchOptions): Promise<{
        results: MemoryItem[];
    }>;
    /** `GET /v1/memories/{id}/`; null for an id the key cannot see. */
    get(memory_id: string): Promise<MemoryItem | null>;
    /** `top_k` rows after `offset` and the total, from the list route's pages of `top_k`: an
     * offset that is not a multiple of `top_k` spans two pages (two requests, so a write between
     * them may shift the rows, as between two pages). */
    private page;
    /** `POST /v1/memories/list/`: the scope's memories, newest first. */
    get_all(options?: ListOptions): Promise<{
        results: MemoryItem[];
    }>;
    /** `POST /v1/memories/list/`: `get_all`'s page and `count`'s total, as `[rows, total]`. */
    get_page(options?: ListOptions): Promise<[MemoryItem[], number]>;
    /** The `count` of `POST /v1/memories/list/` (one row is read along). */
    count(options?: CountOptions): Promise<number>;
    /** `GET /v1/memories/{id}/history/`; `[]` for an id the key cannot see. */
    history(memory_id: string): Promise<HistoryEvent[]>;
    /** `GET /v1/memories/{id}/related/`: memories of the same scope that name the same people,
     * places, things, dates or titles, best first; `not_found` for an id the key cannot see. */
    related(memory_id: string, options?: RelatedOptions): Promise<{
        results: RelatedItem[];
    }>;
    /** `GET /v1/entities/names/`: the entities the scope's memories name, the most named first. */
    entities(options?: EntitiesOptions): Promise<{
        results: NamedEntity[];
    }>;
    /** `PUT /v1/memories/{id}/`: a new text, new metadata, or both (`data` is mem0's `text`). */
    update(memory_id: string, text?: string | null, metadata?: Metadata | null, options?: UpdateOptions): Promise<UpdateAnswer>;
    /** `DELETE /v1/memories/{id}/`. */
    delete(memory_id: string): Promise<DeleteAnswer>;
    /** `DELETE /v1/memories/?user_id=...`: every memory of a scope. */
    delete_all(options?: ScopeOptions): Promise<DeleteAllAnswer>;
    /** `DELETE /v1/users/{user_id}/`: crypto-shredding; `not_found` for an unknown user. */
    erase_user(user_id: string): Promise<EraseAnswer>;
    /** `GET /v1/users/{user_id}/export/`, streamed: the `await` throws `not_found` for an unknown
     * user; then `for await (const line of ...)` reads the lines as they arrive. Read them all (or
     * leave the loop early, which closes the stream) to free the connection. */
    export_user(user_id: string): Promise<AsyncGenerator<ExportLine, void, undefined>>;
    private lines;
    /** `POST /v1/users/{user_id}/rotate-key/` (admin). */
    rotate_user_key(user_id: string): Promise<RotateAnswer>;
    /** `GET /v1/namespace/settings/` (admin): the key's namespace's rules. */
    namespace_settings(): Promise<NamespaceRules>;
    /** `PUT /v1/namespace/settings/` (admin): `default_ttl_seconds: null` clears the default TTL;
     * left out it is kept. */
    configure_namespace(options?: ConfigureNamespaceOptions): Promise<NamespaceRules>;
    /** `GET /v1/namespaces/` (admin): an operator's key lists every namespace, another its own. */
    namespaces(): Promise<NamespaceInfo[]>;
    /** `GET /v1/jobs/{id}`; with `user_id`, only a job of that user (else `not_found`). */
    job(job_id: string, options?: JobOptions): Promise<Job>;
    /** `GET /v1/jobs/?status=&user_id=&limit=`: newest first. */
    jobs(options?: JobsOptions): Promise<{
        results: Job[];
    }>;
    /** `POST /v1/jobs/{id}/retry`; with `user_id`, only a job of that user. */
    retry_job(job_id: string, options?: JobOptions): Promise<Job>;
    /** `PUT /v1/namespace/webhook/` (admin): a new webhook's `secret` is in this answer only. */
    configure_webhook(url: string, options?: ConfigureWebhookOptions): Promise<Webhook>;
    /** `GET /v1/namespace/webhook/` (admin): never the secret; `not_found` when there is none. */
    webhook(): Promise<Webhook>;
    /** `DELETE /v1/namespace/webhook/` (admin): undelivered events are dropped. */
    remove_webhook(): Promise<{
        deleted: boolean;
        deliveries_deleted: number;
    }>;
    /** `POST /v1/namespace/webhook/rotate-secret` (admin): the new secret, in this answer only;
     * with `overlap_seconds` the old one goes on signing beside it for that long. */
    rotate_webhook_secret(options?: RotateWebhookSecretOptions): Promise<Webhook>;
    /** `GET /v1/namespace/webhook/deliveries/?status=&limit=` (admin): newest first. */
    webhook_deliveries(options?: WebhookDeliveriesOptions): Promise<{
        results: WebhookDelivery[];
    }>;
    /** `POST /v1/namespace/webhook/deliveries/{id}/retry` (admin): a dead delivery sent again. */
    retry_webhook_delivery(delivery_id: string): Promise<WebhookDelivery>;
    /** `GET /readyz`: throws `storage_error` when the server's stores do not answer. */
    ping(): Promise<void>;
}
