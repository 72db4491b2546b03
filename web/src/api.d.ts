/* Generated from docs/openapi.json (made from the service's Rust types) by web/build.mjs with
 * json-schema-to-typescript; do not edit: `npm run build` in web/ rewrites it. */

/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "ChunkUnit".
 */
export type ChunkUnit = 'characters' | 'tokens';
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "WebhookEvent".
 */
export type WebhookEvent =
  'crawl.started' | 'crawl.page' | 'crawl.completed' | 'crawl.failed' | 'crawl.cancelled';
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "CrawlState".
 */
export type CrawlState = 'queued' | 'running' | 'stopping' | 'completed' | 'failed' | 'cancelled';
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "CrawlType".
 */
export type CrawlType = 'auto' | 'page' | 'sitemap' | 'llms_txt' | 'recursive';
/**
 * The budget that cut a crawl short: links were left that it did not follow.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Limit".
 */
export type Limit = 'maxPages' | 'maxDepth';
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Mode".
 */
export type Mode = 'hybrid' | 'vector' | 'text';
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Render".
 */
export type Render = 'http' | 'browser' | 'auto';
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Stage".
 */
export type Stage =
  | 'analyzing'
  | 'discovering'
  | 'crawling'
  | 'processing'
  | 'embedding'
  | 'storing'
  | 'finalizing'
  | 'done';
/**
 * When a rendered page counts as loaded.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "WaitUntil".
 */
export type WaitUntil = 'domcontentloaded' | 'load' | 'networkidle';

export interface TrawlApi {}
/**
 * `basicAuth` of a crawl request.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "BasicAuth".
 */
export interface BasicAuth {
  /**
   * Without `:`.
   */
  username: string;
  password: string;
}
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "ChunkHit".
 */
export interface ChunkHit {
  chunkId: number;
  url: string;
  title?: string | null;
  content: string;
  /**
   * The PDF page the chunk starts on; absent for other documents.
   */
  page?: number | null;
  /**
   * Higher is better; results come best first. Its scale depends on the
   * mode: `bm25` for text, cosine similarity for vector, and 0 to 1 for
   * hybrid (the two rankings' scores, each normalised, then weighed).
   */
  score: number;
}
/**
 * One chunk of a page.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "ChunkText".
 */
export interface ChunkText {
  /**
   * Its place in the page, from 0.
   */
  index: number;
  /**
   * The headings above it, `H1 > H2`.
   */
  headingPath: string;
  content: string;
}
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "CodeHit".
 */
export interface CodeHit {
  id: number;
  url: string;
  language: string;
  code: string;
  contextBefore: string;
  contextAfter: string;
  /**
   * Higher is better; results come best first (scaled as in chunk hits).
   */
  score: number;
}
/**
 * One code example of a page.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "CodeText".
 */
export interface CodeText {
  id: number;
  language: string;
  code: string;
  contextBefore: string;
  contextAfter: string;
}
/**
 * `CrawlRequest` of CONTRACT.md; keys in camelCase or snake_case. Unknown
 * keys are refused so that a typo (`maxdepth`) is not silently ignored.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "CrawlRequest".
 */
export interface CrawlRequest {
  /**
   * The http(s) URL to start from. Its host must not resolve only to
   * private, loopback or link-local addresses (unless the service allows them).
   */
  url: string;
  crawlType?: 'auto' | 'page' | 'sitemap' | 'llms_txt' | 'recursive';
  /**
   * Link hops followed from the start page by `recursive` crawls (default 3).
   * A crawl it cuts short ends with `limitReached: "maxDepth"`.
   */
  maxDepth?: number | null;
  /**
   * Pages taken on at most (default 1000). A crawl it cuts short ends
   * with `limitReached: "maxPages"`.
   */
  maxPages?: number | null;
  /**
   * Path globs a URL must match one of (none: every path).
   *
   * @maxItems 100
   */
  include?: string[];
  /**
   * Path globs no URL may match.
   *
   * @maxItems 100
   */
  exclude?: string[];
  /**
   * Stay on the start URL's host (default true).
   */
  sameDomain?: boolean | null;
  /**
   * With `sameDomain`, hosts below the start host count as its own
   * (`docs.example.com` for `example.com`; default false).
   */
  allowSubdomains?: boolean | null;
  /**
   * Honour robots.txt (default true).
   */
  respectRobots?: boolean | null;
  render?: null | ('http' | 'browser' | 'auto');
  /**
   * Fetches in flight at once (default 16, the service's
   * `--default-concurrency`).
   */
  concurrency?: number | null;
  /**
   * Browser pages open at once for this crawl (default 4, at most the
   * service's browser max pages, 8 by default).
   */
  browserConcurrency?: number | null;
  waitUntil?: null | ('domcontentloaded' | 'load' | 'networkidle');
  /**
   * Labels kept with the crawl: at most 32, each 1 to 100 characters.
   *
   * @maxItems 32
   */
  tags?: string[];
  /**
   * Largest chunk in characters (default 1200).
   */
  chunkSize?: number | null;
  /**
   * Characters shared by consecutive chunks (default 150, or a quarter of
   * `chunkSize` when that is smaller); less than `chunkSize`.
   */
  chunkOverlap?: number | null;
  chunkUnit?: null | ('characters' | 'tokens');
  webhook?: null | WebhookSpec;
  /**
   * For a site behind a login: headers sent with every request to the
   * crawl's hosts (e.g. `{"Authorization": "Bearer …"}`): robots.txt,
   * sitemaps, llms.txt, pages, redirect hops and a rendered page's own
   * requests; never to another host, nor over `http` after an `https`
   * start. At most 50, each value at most 8 KiB. Never shown; stored only
   * until the crawl ends (for another instance to resume it).
   */
  headers?: {
    [k: string]: string;
  };
  /**
   * Cookies sent as one `Cookie` header, as `headers` are: name to value.
   */
  cookies?: {
    [k: string]: string;
  };
  basicAuth?: null | BasicAuth1;
}
/**
 * Where to post the crawl's events (signed; see the README's Webhooks).
 */
export interface WebhookSpec {
  /**
   * Where deliveries are posted (http or https; it passes the address
   * guard like a crawl's URL).
   */
  url: string;
  /**
   * Extra headers for the receiver (e.g. its own `Authorization`). Kept
   * to retry with, never shown back: listings show them redacted.
   */
  headers?: {
    [k: string]: string;
  };
  /**
   * Only these events (default: all).
   */
  events?: WebhookEvent[] | null;
}
/**
 * HTTP basic auth, sent as `headers` are. A start URL's
 * `user:password@` is taken as this.
 */
export interface BasicAuth1 {
  /**
   * Without `:`.
   */
  username: string;
  password: string;
}
/**
 * `CrawlStatus` of CONTRACT.md.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "CrawlStatus".
 */
export interface CrawlStatus {
  /**
   * The crawl's id: its Socket.IO room and its URLs' last segment.
   */
  progressId: string;
  /**
   * The start URL.
   */
  url: string;
  /**
   * The source the crawl is filed under (`GET /api/sources/{id}`): one per
   * start URL per tenant. None for crawls from before sources.
   */
  sourceId?: string | null;
  /**
   * Where the crawl is in its life; a terminal state never changes again.
   */
  status: 'queued' | 'running' | 'stopping' | 'completed' | 'failed' | 'cancelled';
  /**
   * What the crawl is doing; `done` once completed (a cancelled or failed
   * crawl keeps the stage it ended in).
   */
  stage:
    | 'analyzing'
    | 'discovering'
    | 'crawling'
    | 'processing'
    | 'embedding'
    | 'storing'
    | 'finalizing'
    | 'done';
  /**
   * An estimate from what is known (pages done, pages waiting, links found
   * and not yet taken on, depth against `maxDepth`, the `maxPages` budget):
   * it moves with every page, never decreases, and reaches 100 only when
   * the crawl completes. Sent rounded down to 0.1.
   */
  percentage: number;
  /**
   * Pages fetched and stored with their content.
   */
  pagesCrawled: number;
  /**
   * Pages that could not be had (HTTP errors, timeouts, refused addresses, ...).
   */
  pagesFailed: number;
  /**
   * Pages left out on purpose: robots.txt, an unsupported type, a
   * duplicate of a page kept (`GET .../pages` says why for each).
   */
  pagesSkipped: number;
  /**
   * Pages known and still to crawl: taken on and not done, plus links found
   * that the crawl will follow (within `maxDepth` and `maxPages`).
   */
  pagesQueued: number;
  /**
   * Chunks of markdown stored, each searchable.
   */
  chunksStored: number;
  /**
   * Code examples stored.
   */
  codeExamples: number;
  /**
   * Chunks stored without a vector: not yet embedded (the local model
   * embeds behind the crawl, stage `embedding`), or, once the crawl has
   * ended, left by a stop or refused by the embedder for good;
   * `trawl embed --missing` fills them in.
   */
  chunksUnembedded: number;
  /**
   * A refresh of its source (`POST /api/sources/{id}/refresh`): when it
   * completes, the source's pages the site no longer has are removed.
   */
  refresh?: boolean;
  /**
   * Crawled pages the source did not have before.
   */
  pagesNew?: number;
  /**
   * Crawled pages whose content differs from what the source kept.
   */
  pagesChanged?: number;
  /**
   * Crawled pages whose content is what the source kept (a `304`, or the
   * same content hash): kept as they were, nothing embedded again.
   */
  pagesUnchanged?: number;
  /**
   * Pages a completed refresh removed: gone from the site (404, 410) or no
   * longer reached.
   */
  pagesRemoved?: number;
  /**
   * Vectors this crawl made for its chunks and code examples so far;
   * identical texts of a changed page reuse their vectors. A crawl
   * completes when every chunk has its vector.
   */
  chunksEmbedded?: number;
  /**
   * A page being fetched now, while the crawl runs.
   */
  currentUrl?: string | null;
  /**
   * What is happening now, e.g. "42 pages crawled, 310 waiting, depth 3 of 5";
   * for an ended crawl, how it ended.
   */
  message?: string | null;
  /**
   * Why a failed crawl failed.
   */
  error?: string | null;
  limitReached?: null | ('maxPages' | 'maxDepth');
  /**
   * When it was asked for.
   */
  createdAt: string;
  /**
   * When it started running.
   */
  startedAt?: string | null;
  /**
   * When it reached its terminal state.
   */
  finishedAt?: string | null;
}
/**
 * The body of every error answer (for the OpenAPI document).
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "ErrorBody".
 */
export interface ErrorBody {
  error: ErrorDetail;
}
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "ErrorDetail".
 */
export interface ErrorDetail {
  /**
   * A stable snake_case word: invalid_url, forbidden_address, not_found, unauthorized, …
   */
  code: string;
  message: string;
}
/**
 * What every event of a crawl carries besides its payload, on every
 * surface (Socket.IO and SSE alike).
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "EventStamp".
 */
export interface EventStamp {
  /**
   * Monotonic per crawl, from 1; also the SSE `id`. A snapshot carries the
   * id of the newest event it includes, and a finished crawl read back
   * from the store carries its final event's id.
   */
  eventId: number;
  /**
   * When the event was sent (RFC 3339, milliseconds, UTC).
   */
  emittedAt: string;
}
/**
 * A source's newest crawl.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "LastCrawl".
 */
export interface LastCrawl {
  id: string;
  status: CrawlState;
  finishedAt?: string | null;
}
/**
 * A stored page with what was made of it: `GET /api/pages/{id}`.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "PageContent".
 */
export interface PageContent {
  id: number;
  /**
   * The crawl that stored it.
   */
  crawlId: string;
  url: string;
  /**
   * Where redirects ended, when elsewhere.
   */
  finalUrl?: string | null;
  title?: string | null;
  description?: string | null;
  /**
   * `crawled`, `failed` or `skipped`.
   */
  status: string;
  httpStatus?: number | null;
  /**
   * `markdown` (HTML and markdown pages) or `text`.
   */
  format?: string | null;
  /**
   * The page's main content as stored (none for failed and skipped pages).
   */
  markdown?: string | null;
  /**
   * The SHA-256 of `markdown`, hex.
   */
  contentHash?: string | null;
  error?: string | null;
  fetchedAt: string;
  /**
   * Its chunks in order: what search finds.
   */
  chunks: ChunkText[];
  codeExamples: CodeText[];
}
/**
 * A page as the pages listing shows it (CONTRACT.md), plus the cursor key.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "PageSummary".
 */
export interface PageSummary {
  /**
   * The page's id: `GET /api/pages/{id}` reads its content.
   */
  id: number;
  url: string;
  finalUrl?: string | null;
  title?: string | null;
  status: string;
  httpStatus?: number | null;
  depth: number;
  chunks: number;
  codeExamples: number;
  error?: string | null;
  /**
   * Whether the content was rendered in Chromium (`render` `browser`, or `auto` for a page that needed scripts).
   */
  rendered: boolean;
  /**
   * Links past the per-page cap (`TRAWL_MAX_LINKS_PER_PAGE`, 5,000 by
   * default) that a crawl following links did not follow.
   */
  linksCut: number;
  /**
   * The page's markdown, with `?include=markdown`.
   */
  markdown?: string | null;
}
/**
 * What `/readyz` answers.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Readiness".
 */
export interface Readiness {
  /**
   * Always `ready` (otherwise the answer is a 503).
   */
  status: string;
  /**
   * Crawls this instance runs.
   */
  activeCrawls: number;
  /**
   * The model vectors are made with: a sentence model
   * (`all-MiniLM-L6-v2`) matches meaning; `local-hash-*`, the fallback
   * when the model cannot be had, matches words.
   */
  embedder: string;
  vectorIndex?: null | VectorIndexState;
}
/**
 * The embedded store's vector graph (absent on PostgreSQL, whose HNSW
 * index lives in the database).
 */
export interface VectorIndexState {
  /**
   * Searches use the graph (false while it is rebuilt: they scan).
   */
  ready: boolean;
  /**
   * Vectors in the graph.
   */
  vectors: number;
  /**
   * Vector changes stored but not in the graph yet (searches scan those).
   */
  behind: number;
}
/**
 * What deleting a source removed.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Removed".
 */
export interface Removed {
  crawls: number;
  pages: number;
  chunks: number;
  codeExamples: number;
}
/**
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "SearchRequest".
 */
export interface SearchRequest {
  /**
   * What to look for; not blank.
   */
  query: string;
  /**
   * Results at most (default 10).
   */
  limit?: number | null;
  progressId?: string | null;
  /**
   * Only pages of this host. A URL or `host:port` is taken as its host
   * (the port does not narrow it: pages are kept by host).
   */
  source?: string | null;
  mode?: Mode;
}
/**
 * What one tenant keeps from one site (`GET /api/sources/{id}`).
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Source".
 */
export interface Source {
  id: string;
  name: string;
  /**
   * The start URL: one source per URL per tenant.
   */
  url: string;
  tags: string[];
  /**
   * The crawl settings (a `CrawlRequest`) of its latest crawl, or as patched.
   */
  settings: {};
  /**
   * Pages it keeps with their content (crawled pages of its crawls).
   */
  pages: number;
  chunks: number;
  codeExamples: number;
  lastCrawl?: null | LastCrawl;
  /**
   * Refreshed every so often (`"6h"`, `"1d"`), or
   */
  refreshEvery?: string | null;
  /**
   * at the times of this cron expression (UTC).
   */
  cron?: string | null;
  /**
   * When the next scheduled refresh starts.
   */
  nextRefreshAt?: string | null;
  createdAt: string;
  updatedAt: string;
}
/**
 * `PATCH /api/sources/{id}`: any of these; the rest stays.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "SourceUpdate".
 */
export interface SourceUpdate {
  /**
   * 1 to 200 characters.
   */
  name?: string | null;
  /**
   * Replaces the tags: at most 32, each 1 to 100 characters.
   *
   * @maxItems 32
   */
  tags?: string[] | null;
  /**
   * The crawl settings its refreshes use: a `CrawlRequest` whose `url`,
   * when given, is the source's own (a source's URL never changes).
   */
  settings?: {} | null;
  /**
   * Refresh this often: `"6h"`, `"1d"`, `"90m"` (at least a minute);
   * replaces a cron schedule; `null` removes it.
   */
  refreshEvery?: string | null;
  /**
   * Refresh at the times of this cron expression (five fields, UTC), e.g.
   * `"0 3 * * *"`; replaces an interval; `null` removes it.
   */
  cron?: string | null;
  /**
   * When the next scheduled refresh starts (by default the schedule's
   * next time from now); `null` pauses the schedule.
   */
  nextRefreshAt?: string | null;
}
/**
 * The 202 answer to a started crawl.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "Started".
 */
export interface Started {
  progressId: string;
  /**
   * The source the crawl is filed under.
   */
  sourceId?: string | null;
  status: CrawlState;
  statusUrl: string;
  eventsUrl: string;
  room: string;
}
/**
 * `crawl:stopped`: sent once, after every task of a stopped crawl has
 * ended; nothing about the crawl changes after it.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "StoppedEvent".
 */
export interface StoppedEvent {
  progressId: string;
  /**
   * Always `cancelled`.
   */
  status: string;
  /**
   * How it ended, e.g. `stopped by request`.
   */
  message: string;
  /**
   * When it ended (RFC 3339, milliseconds, UTC); kept beside `emittedAt`.
   */
  timestamp: string;
}
/**
 * `crawl:stopping`: sent once, the moment a stop is asked, before the
 * crawl's in-flight work has ended.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "StoppingEvent".
 */
export interface StoppingEvent {
  progressId: string;
  /**
   * Always `stopping`.
   */
  status: string;
  /**
   * Always `stop requested`.
   */
  message: string;
}
/**
 * The embedded store's vector index, as `/readyz` shows it.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "VectorIndexState".
 */
export interface VectorIndexState1 {
  /**
   * Searches use the graph (false while it is rebuilt: they scan).
   */
  ready: boolean;
  /**
   * Vectors in the graph.
   */
  vectors: number;
  /**
   * Vector changes stored but not in the graph yet (searches scan those).
   */
  behind: number;
}
/**
 * The secret and how deliveries are signed.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "WebhookSecret".
 */
export interface WebhookSecret {
  /**
   * HMAC-SHA256 key of this tenant's deliveries.
   */
  secret: string;
  /**
   * The header that carries the signature: `t=<unix seconds>,v1=<hex HMAC of "<t>.<raw body>">`.
   */
  header: string;
  /**
   * Refuse a delivery whose `t` is older than this many seconds.
   */
  toleranceSeconds: number;
}
/**
 * What a crawl request's `webhook` says.
 *
 * This interface was referenced by `TrawlApi`'s JSON-Schema
 * via the `definition` "WebhookSpec".
 */
export interface WebhookSpec1 {
  /**
   * Where deliveries are posted (http or https; it passes the address
   * guard like a crawl's URL).
   */
  url: string;
  /**
   * Extra headers for the receiver (e.g. its own `Authorization`). Kept
   * to retry with, never shown back: listings show them redacted.
   */
  headers?: {
    [k: string]: string;
  };
  /**
   * Only these events (default: all).
   */
  events?: WebhookEvent[] | null;
}
