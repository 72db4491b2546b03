// The live side: one Socket.IO connection (the official client v4), typed by
// the schema the service generates from its own event types. It keeps the
// latest status of every crawl it follows, re-subscribes by itself after a
// reconnect (a restarted server knows nothing of this page's rooms), and
// tells the views what changed.
import { io, type Socket } from 'socket.io-client';
import type {
  ClientToServerEvents,
  CrawlProgressEvent,
  CrawlStatus,
  CrawlStoppedEvent,
  CrawlStoppingEvent,
  ServerToClientEvents,
} from './events';
import { apiKey } from './http';

type Listen = { [K in keyof ServerToClientEvents]: (payload: ServerToClientEvents[K]) => void };
type Emit = {
  [K in keyof ClientToServerEvents]: (
    payload: ClientToServerEvents[K]['payload'],
    ack: (answer: ClientToServerEvents[K]['ack']) => void,
  ) => void;
};

export type Connection = 'connecting' | 'live' | 'lost' | 'refused';

/** What the views hear about. */
export interface LiveListener {
  /** A crawl's newer status (from a snapshot or an event). */
  progress?(s: CrawlStatus, log: string | null): void;
  /** `crawl:stopping` / `crawl:stopped` for a crawl. */
  stopping?(e: CrawlStoppingEvent): void;
  stopped?(e: CrawlStoppedEvent): void;
  /** The tenant's running crawls, when one starts or ends. */
  active?(crawls: CrawlStatus[]): void;
  /** Back after a lost connection: views reload what they show from the API. */
  reconnected?(): void;
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
export const isTerminal = (s: CrawlStatus): boolean => TERMINAL.has(s.status);

class Live {
  private socket: Socket<Listen, Emit>;
  private listeners = new Set<LiveListener>();
  private rooms = new Set<string>();
  private latest = new Map<string, CrawlStatus>();
  private wasLost = false;
  state: Connection = 'connecting';
  onState: (c: Connection, why?: string) => void = () => {};

  constructor() {
    this.socket = io({
      // Read at every (re)connect: a key typed in meanwhile is used.
      auth: (cb) => {
        const token = apiKey();
        cb(token ? { token } : {});
      },
      transports: ['websocket', 'polling'],
    });
    this.socket.on('connect', () => {
      this.setState('live');
      for (const id of this.rooms) this.join(id);
      this.socket.emit('subscribe_crawls', null, (ack) => {
        if ('ok' in ack) this.emitActive(ack.crawls);
      });
      if (this.wasLost) {
        this.wasLost = false;
        for (const l of this.listeners) l.reconnected?.();
      }
    });
    this.socket.on('disconnect', (reason) => {
      this.wasLost = true;
      // The server's own `disconnect` (not a restart) is not retried by the client.
      if (reason === 'io server disconnect') this.socket.connect();
      this.setState('lost');
    });
    this.socket.on('connect_error', (err) => {
      this.wasLost = true;
      if (!this.socket.active) {
        // Refused by the server's middleware: the key. Retrying would not help.
        this.setState('refused', err.message);
      } else {
        this.setState('lost');
      }
    });
    this.socket.on('crawl_progress', (p: CrawlProgressEvent) => {
      const { log, eventId: _id, emittedAt, ...status } = p;
      this.update(status, log);
      // The browser's own clock: from the service's send to the DOM updated.
      const start = Date.parse(emittedAt) - performance.timeOrigin;
      if (Number.isFinite(start) && start > 0) {
        requestAnimationFrame(() => {
          try {
            performance.measure('trawl:progress-to-dom', { start, end: performance.now() });
          } catch {
            // A start after now (clock skew between machines): not a measurement.
          }
        });
      }
    });
    this.socket.on('crawl:stopping', (e) => {
      const s = this.latest.get(e.progressId);
      if (s && !isTerminal(s)) this.update({ ...s, status: 'stopping', message: e.message }, null);
      for (const l of this.listeners) l.stopping?.(e);
    });
    this.socket.on('crawl:stopped', (e) => {
      for (const l of this.listeners) l.stopped?.(e);
    });
    this.socket.on('crawls_update', (u) => this.emitActive(u.crawls));
  }

  private setState(c: Connection, why?: string): void {
    this.state = c;
    this.onState(c, why);
  }

  private emitActive(crawls: CrawlStatus[]): void {
    for (const c of crawls) this.update(c, null);
    for (const l of this.listeners) l.active?.(crawls);
  }

  /** Keeps the latest status (events arrive in order) and tells the views. */
  private update(s: CrawlStatus, log: string | null): void {
    this.latest.set(s.progressId, s);
    for (const l of this.listeners) l.progress?.(s, log);
  }

  listen(l: LiveListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Follows a crawl: a snapshot at once, then every event. */
  follow(id: string): void {
    if (this.rooms.has(id)) return;
    this.rooms.add(id);
    if (this.socket.connected) this.join(id);
  }

  unfollow(id: string): void {
    if (!this.rooms.delete(id)) return;
    if (this.socket.connected) this.socket.emit('crawl_unsubscribe', { progress_id: id }, () => {});
  }

  private join(id: string): void {
    this.socket.emit('crawl_subscribe', { progress_id: id }, (ack) => {
      if ('error' in ack) this.rooms.delete(id);
    });
  }

  /** Asks for a stop over the socket; answers the API's error in words. */
  stop(id: string): Promise<string | null> {
    return new Promise((resolve) => {
      if (!this.socket.connected) return resolve('Not connected to the service; try again in a moment.');
      this.socket.timeout(10_000).emit('crawl_stop', { progress_id: id }, (err, ack) => {
        if (err) resolve('The service did not answer the stop in time.');
        else resolve('error' in ack ? ack.error.message : null);
      });
    });
  }

  /** Reconnects with the key now in the browser (after the key was changed). */
  reconnect(): void {
    this.socket.disconnect();
    this.socket.connect();
  }
}

export const live = new Live();
