// Parts several views show: a crawl's status, bar, counters and Stop button.
import type { CrawlStatus } from '../events';
import { h, num, duration } from '../dom';
import { isTerminal, live } from '../live';

export const STATES: Record<string, string> = {
  queued: 'Queued',
  running: 'Running',
  stopping: 'Stopping',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export function statusBadge(s: CrawlStatus): HTMLElement {
  return h('span', { class: `badge ${s.status}`, 'data-field': 'status' }, STATES[s.status] ?? s.status);
}

export function bar(s: CrawlStatus): HTMLElement {
  const pct = Math.max(0, Math.min(100, s.percentage ?? 0));
  return h(
    'span',
    { class: 'bar' },
    h('progress', { max: 100, value: pct, 'aria-label': `Progress of ${s.url}` }),
    h('span', { class: 'pct', 'data-field': 'percentage' }, `${pct.toFixed(1)} %`),
  );
}

export function elapsed(s: CrawlStatus): string {
  const start = Date.parse(s.createdAt);
  const end = s.finishedAt ? Date.parse(s.finishedAt) : Date.now();
  return Number.isFinite(start) ? duration(end - start) : '—';
}

export const stage = (s: CrawlStatus): string => (isTerminal(s) ? '—' : (s.stage ?? '—').replaceAll('_', ' '));

export const counts = (s: CrawlStatus): string =>
  `${num(s.pagesCrawled)} / ${num(s.pagesFailed)} / ${num(s.pagesSkipped)}`;

/** The Stop button of a running crawl; says why when the stop is refused. */
export function stopButton(s: CrawlStatus, report: (msg: string) => void): HTMLButtonElement | null {
  if (isTerminal(s)) return null;
  const b = h('button', { type: 'button', class: 'danger small', 'aria-label': `Stop crawl of ${s.url}` }, 'Stop');
  if (s.status === 'stopping') {
    b.disabled = true;
    b.textContent = 'Stopping…';
  }
  b.addEventListener('click', async () => {
    b.disabled = true;
    b.textContent = 'Stopping…';
    const err = await live.stop(s.progressId);
    if (err) {
      b.disabled = false;
      b.textContent = 'Stop';
      report(err);
    }
  });
  return b;
}
