// The HTTP API, with the tenant's key from this browser when there is one.
import type { ErrorBody } from './api';

const KEY = 'trawl.apiKey';

function storedKey(): string | null {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

/** The key in use: kept in the browser, or only in the page when storage is refused. */
let currentKey: string | null = storedKey();

export function apiKey(): string | null {
  return currentKey;
}

export function setApiKey(key: string | null): void {
  currentKey = key;
  try {
    if (key) localStorage.setItem(KEY, key);
    else localStorage.removeItem(KEY);
  } catch {
    // Storage refused (private mode): the key lasts as long as the page.
  }
}

/** An answer that was not a success, with the API's own code and words. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Who wants to know that the key was refused (the key dialog). */
let onUnauthorized: (f: ApiFailure) => void = () => {};
export function whenUnauthorized(f: (f: ApiFailure) => void): void {
  onUnauthorized = f;
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp: Response;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiFailure(0, 'unreachable', 'The service cannot be reached. Is it running?');
  }
  const text = await resp.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = (data as ErrorBody | null)?.error;
    const failure = new ApiFailure(
      resp.status,
      err?.code ?? 'http_' + resp.status,
      err?.message ?? `The service answered ${resp.status} ${resp.statusText}.`,
    );
    if (resp.status === 401) onUnauthorized(failure);
    throw failure;
  }
  return data as T;
}

export const get = <T>(path: string) => call<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => call<T>('POST', path, body ?? {});
export const del = <T>(path: string) => call<T>('DELETE', path);

/** What to show for a failure, in words. */
export function explain(e: unknown): string {
  if (e instanceof ApiFailure) return e.message;
  return e instanceof Error ? e.message : String(e);
}
