/* Generated from docs/events.schema.json (made from the service's Rust types) by web/build.mjs with
 * json-schema-to-typescript; do not edit: `npm run build` in web/ rewrites it. */

export type StopAck =
  | {
      ok: true;
      progressId: string;
      status: CrawlState;
    }
  | ErrorBody;
/**
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlState".
 */
export type CrawlState = 'queued' | 'running' | 'stopping' | 'completed' | 'failed' | 'cancelled';
export type SubscribeAck =
  | {
      ok: true;
      progressId: string;
      status: CrawlState;
    }
  | ErrorBody;
export type UnsubscribeAck =
  | {
      ok: true;
      progressId: string;
    }
  | ErrorBody;
export type SubscribeCrawlsAck =
  | {
      crawls: CrawlStatus[];
      ok: true;
    }
  | ErrorBody;
export type OkAck =
  | {
      ok: true;
    }
  | ErrorBody;
/**
 * `crawl:stopped`: once, after every task of a stopped crawl has ended.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlStoppedEvent".
 */
export type CrawlStoppedEvent = StoppedEvent & EventStamp;
/**
 * `crawl:stopping`: once, the moment a stop is asked.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlStoppingEvent".
 */
export type CrawlStoppingEvent = StoppingEvent & EventStamp;
/**
 * `crawl_progress`: a snapshot on subscribing, then every change.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlProgressEvent".
 */
export type CrawlProgressEvent = CrawlStatus & {
  /**
   * A line that says what is happening now (`42 pages crawled, 310 waiting, depth 3 of 5`).
   */
  log: string;
} & EventStamp;
/**
 * The budget that cut a crawl short: links were left that it did not follow.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "Limit".
 */
export type Limit = 'maxPages' | 'maxDepth';
/**
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
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
 * trawl's Socket.IO events (path /socket.io, namespace /): what the server sends and what a client may emit. Generated from the service's own types.
 */
export interface TrawlEvents {
  clientToServer: ClientToServerEvents;
  serverToClient: ServerToClientEvents;
}
/**
 * Client → server: each event's payload and acknowledgement, by event name.
 */
export interface ClientToServerEvents {
  crawl_stop: CrawlStop;
  crawl_subscribe: CrawlSubscribe;
  crawl_unsubscribe: CrawlUnsubscribe;
  subscribe_crawls: SubscribeCrawls;
  subscribe_progress: CrawlSubscribe;
  unsubscribe_crawls: UnsubscribeCrawls;
  unsubscribe_progress: CrawlUnsubscribe;
}
/**
 * Stops the crawl: `crawl:stopping` at once, `crawl:stopped` when every task has ended.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlStop".
 */
export interface CrawlStop {
  ack: StopAck;
  payload: CrawlRef;
}
/**
 * The body of every error answer (for the OpenAPI document).
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "ErrorBody".
 */
export interface ErrorBody {
  error: ErrorDetail;
}
/**
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
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
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlRef".
 */
export interface CrawlRef {
  /**
   * The crawl's id (`progressId` is taken too).
   */
  progress_id: string;
}
/**
 * Joins the crawl's room; a `crawl_progress` snapshot follows at once, then every event.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlSubscribe".
 */
export interface CrawlSubscribe {
  ack: SubscribeAck;
  payload: CrawlRef;
}
/**
 * Leaves the crawl's room.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlUnsubscribe".
 */
export interface CrawlUnsubscribe {
  ack: UnsubscribeAck;
  payload: CrawlRef;
}
/**
 * Gets `crawls_update` whenever one of the tenant's crawls starts or ends.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "SubscribeCrawls".
 */
export interface SubscribeCrawls {
  ack: SubscribeCrawlsAck;
  payload: null;
}
/**
 * `CrawlStatus` of CONTRACT.md.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlStatus".
 */
export interface CrawlStatus {
  /**
   * Vectors this crawl made for its chunks and code examples so far;
   * identical texts of a changed page reuse their vectors. A crawl
   * completes when every chunk has its vector.
   */
  chunksEmbedded?: number;
  /**
   * Chunks of markdown stored, each searchable.
   */
  chunksStored: number;
  /**
   * Chunks stored without a vector: not yet embedded (the local model
   * embeds behind the crawl, stage `embedding`), or, once the crawl has
   * ended, left by a stop or refused by the embedder for good;
   * `trawl embed --missing` fills them in.
   */
  chunksUnembedded: number;
  /**
   * Code examples stored.
   */
  codeExamples: number;
  /**
   * When it was asked for.
   */
  createdAt: string;
  /**
   * A page being fetched now, while the crawl runs.
   */
  currentUrl?: string | null;
  /**
   * Why a failed crawl failed.
   */
  error?: string | null;
  /**
   * When it reached its terminal state.
   */
  finishedAt?: string | null;
  limitReached?: null | ('maxPages' | 'maxDepth');
  /**
   * What is happening now, e.g. "42 pages crawled, 310 waiting, depth 3 of 5";
   * for an ended crawl, how it ended.
   */
  message?: string | null;
  /**
   * Crawled pages whose content differs from what the source kept.
   */
  pagesChanged?: number;
  /**
   * Pages fetched and stored with their content.
   */
  pagesCrawled: number;
  /**
   * Pages that could not be had (HTTP errors, timeouts, refused addresses, ...).
   */
  pagesFailed: number;
  /**
   * Crawled pages the source did not have before.
   */
  pagesNew?: number;
  /**
   * Pages known and still to crawl: taken on and not done, plus links found
   * that the crawl will follow (within `maxDepth` and `maxPages`).
   */
  pagesQueued: number;
  /**
   * Pages a completed refresh removed: gone from the site (404, 410) or no
   * longer reached.
   */
  pagesRemoved?: number;
  /**
   * Pages left out on purpose: robots.txt, an unsupported type, a
   * duplicate of a page kept (`GET .../pages` says why for each).
   */
  pagesSkipped: number;
  /**
   * Crawled pages whose content is what the source kept (a `304`, or the
   * same content hash): kept as they were, nothing embedded again.
   */
  pagesUnchanged?: number;
  /**
   * An estimate from what is known (pages done, pages waiting, links found
   * and not yet taken on, depth against `maxDepth`, the `maxPages` budget):
   * it moves with every page, never decreases, and reaches 100 only when
   * the crawl completes. Sent rounded down to 0.1.
   */
  percentage: number;
  /**
   * The crawl's id: its Socket.IO room and its URLs' last segment.
   */
  progressId: string;
  /**
   * A refresh of its source (`POST /api/sources/{id}/refresh`): when it
   * completes, the source's pages the site no longer has are removed.
   */
  refresh?: boolean;
  /**
   * The source the crawl is filed under (`GET /api/sources/{id}`): one per
   * start URL per tenant. None for crawls from before sources.
   */
  sourceId?: string | null;
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
   * When it started running.
   */
  startedAt?: string | null;
  /**
   * Where the crawl is in its life; a terminal state never changes again.
   */
  status: 'queued' | 'running' | 'stopping' | 'completed' | 'failed' | 'cancelled';
  /**
   * The start URL.
   */
  url: string;
}
/**
 * Stops those.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "UnsubscribeCrawls".
 */
export interface UnsubscribeCrawls {
  ack: OkAck;
  payload: null;
}
/**
 * Server → client: each event's payload, by event name.
 */
export interface ServerToClientEvents {
  'crawl:stopped': CrawlStoppedEvent;
  'crawl:stopping': CrawlStoppingEvent;
  crawl_progress: CrawlProgressEvent;
  crawls_update: CrawlsUpdateEvent;
}
/**
 * `crawl:stopped`: sent once, after every task of a stopped crawl has
 * ended; nothing about the crawl changes after it.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "StoppedEvent".
 */
export interface StoppedEvent {
  /**
   * How it ended, e.g. `stopped by request`.
   */
  message: string;
  progressId: string;
  /**
   * Always `cancelled`.
   */
  status: string;
  /**
   * When it ended (RFC 3339, milliseconds, UTC); kept beside `emittedAt`.
   */
  timestamp: string;
}
/**
 * What every event of a crawl carries besides its payload, on every
 * surface (Socket.IO and SSE alike).
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "EventStamp".
 */
export interface EventStamp {
  /**
   * When the event was sent (RFC 3339, milliseconds, UTC).
   */
  emittedAt: string;
  /**
   * Monotonic per crawl, from 1; also the SSE `id`. A snapshot carries the
   * id of the newest event it includes, and a finished crawl read back
   * from the store carries its final event's id.
   */
  eventId: number;
}
/**
 * `crawl:stopping`: sent once, the moment a stop is asked, before the
 * crawl's in-flight work has ended.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "StoppingEvent".
 */
export interface StoppingEvent {
  /**
   * Always `stop requested`.
   */
  message: string;
  progressId: string;
  /**
   * Always `stopping`.
   */
  status: string;
}
/**
 * `crawls_update`: when one of the tenant's crawls starts or ends.
 *
 * This interface was referenced by `TrawlEvents`'s JSON-Schema
 * via the `definition` "CrawlsUpdateEvent".
 */
export interface CrawlsUpdateEvent {
  crawls: CrawlStatus[];
}
