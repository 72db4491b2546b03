// One crawl: live counters and log lines, Stop, and the pages it stored.
import type { PageSummary } from '../api';
import type { CrawlStatus } from '../events';
import { h, fill, num, empty, table, when, outLink } from '../dom';
import { get, explain } from '../http';
import { isTerminal, live } from '../live';
import { bar, elapsed, stage, statusBadge, stopButton } from './common';
import type { View } from '../main';

interface PageList {
  pages: PageSummary[];
  nextCursor: string | null;
}

const MAX_LOG_LINES = 500;

export function crawlView(root: HTMLElement, id: string): View {
  const note = h('p', { class: 'error', role: 'alert', hidden: true });
  const report = (msg: string) => {
    note.textContent = msg;
    note.hidden = false;
  };
  const head = h('div', { class: 'crawl-head' });
  const stats = h('dl', { class: 'stats' });
  const log = h('ol', { class: 'log', 'aria-label': 'Log', 'aria-live': 'off' });
  const pagesBox = h('div', { id: 'pages' });
  const filter = h(
    'select',
    { id: 'page-filter' },
    [
      ['', 'All pages'],
      ['crawled', 'Crawled'],
      ['failed', 'Failed'],
      ['skipped', 'Skipped'],
    ].map(([v, t]) => h('option', { value: v }, t)),
  );
  let current: CrawlStatus | null = null;
  let lastLog = '';
  let pages: PageSummary[] = [];
  let cursor: string | null = null;

  const stat = (label: string, field: string, value: string) =>
    h('div', {}, h('dt', {}, label), h('dd', { 'data-field': field }, value));

  const draw = (s: CrawlStatus) => {
    current = s;
    fill(
      head,
      h('p', { class: 'url' }, outLink(s.url)),
      h('div', { class: 'row' }, statusBadge(s), bar(s), stopButton(s, report)),
      s.message ? h('p', { class: 'message', 'data-field': 'message' }, s.message) : null,
      s.error ? h('p', { class: 'error', 'data-field': 'error' }, `Error: ${s.error}`) : null,
    );
    fill(
      stats,
      stat('Stage', 'stage', stage(s)),
      stat('Crawled', 'pagesCrawled', num(s.pagesCrawled)),
      stat('Failed', 'pagesFailed', num(s.pagesFailed)),
      stat('Skipped', 'pagesSkipped', num(s.pagesSkipped)),
      stat('Waiting', 'pagesQueued', num(s.pagesQueued)),
      stat('Chunks', 'chunksStored', num(s.chunksStored)),
      stat('Code examples', 'codeExamples', num(s.codeExamples)),
      stat('Elapsed', 'elapsed', elapsed(s)),
      stat('Started', 'createdAt', when(s.createdAt)),
      s.sourceId ? h('div', {}, h('dt', {}, 'Source'), h('dd', {}, h('a', { href: '#/sources' }, 'Sources'))) : null,
    );
  };

  const addLog = (line: string | null) => {
    if (!line || line === lastLog) return;
    lastLog = line;
    log.append(h('li', {}, h('time', {}, new Date().toLocaleTimeString()), ' ', line));
    while (log.childElementCount > MAX_LOG_LINES) log.firstElementChild?.remove();
    log.scrollTop = log.scrollHeight;
  };

  const drawPages = () => {
    const want = filter.value;
    const shown = want ? pages.filter((p) => p.status === want) : pages;
    if (shown.length === 0) {
      fill(pagesBox, empty(pages.length === 0 ? 'No pages stored yet.' : `No ${want} pages among those loaded.`));
    } else {
      const rows = shown.map((p) =>
        h(
          'tr',
          { 'data-status': p.status },
          h('td', { class: 'url' }, p.status === 'crawled' ? h('a', { href: `#/pages/${p.id}` }, p.title || p.url) : p.url),
          h('td', {}, h('span', { class: `badge ${p.status}` }, p.status)),
          h('td', {}, p.httpStatus ?? '—'),
          h('td', {}, num(p.depth)),
          h('td', {}, num(p.chunks)),
          h('td', { class: 'err' }, p.error ?? ''),
        ),
      );
      fill(pagesBox, table('Pages of this crawl', ['Page', 'Status', 'HTTP', 'Depth', 'Chunks', 'Error'], rows));
    }
    if (cursor) pagesBox.append(h('button', { type: 'button', onclick: () => void loadPages(true) }, 'Load more pages'));
  };

  async function loadPages(more = false): Promise<void> {
    try {
      const q = more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const page = await get<PageList>(`/api/crawls/${encodeURIComponent(id)}/pages?limit=200${q}`);
      pages = more ? pages.concat(page.pages) : page.pages;
      cursor = page.nextCursor;
      drawPages();
    } catch (e) {
      report(`Could not load the pages: ${explain(e)}`);
    }
  }

  async function load(): Promise<void> {
    try {
      const s = await get<CrawlStatus>(`/api/crawls/${encodeURIComponent(id)}`);
      draw(s);
      addLog(s.message ?? null);
      note.hidden = true;
      if (!isTerminal(s)) live.follow(id);
      await loadPages();
    } catch (e) {
      fill(head, h('p', { class: 'error', role: 'alert' }, explain(e)));
    }
  }

  filter.addEventListener('change', drawPages);
  let reloadTimer: ReturnType<typeof setTimeout> | null = null;
  const off = live.listen({
    progress(s, line) {
      if (s.progressId !== id) return;
      const ended = isTerminal(s) && !(current && isTerminal(current));
      draw(s);
      addLog(line);
      // Pages come in while it runs: the table follows, at most every 2 s.
      if (ended) void loadPages();
      else if (!reloadTimer) reloadTimer = setTimeout(() => ((reloadTimer = null), void loadPages()), 2000);
    },
    stopping(e) {
      if (e.progressId === id) addLog('Stop requested');
    },
    stopped(e) {
      if (e.progressId === id) addLog(`Stopped: ${e.message}`);
    },
    reconnected() {
      void load();
    },
  });
  const ticker = setInterval(() => {
    if (current && !isTerminal(current)) {
      const cell = stats.querySelector('[data-field=elapsed]');
      if (cell) cell.textContent = elapsed(current);
    }
  }, 1000);

  fill(
    root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Crawls')),
    h('h1', { tabindex: -1 }, 'Crawl'),
    note,
    head,
    stats,
    h('h2', {}, 'Log'),
    log,
    h('div', { class: 'row' }, h('h2', {}, 'Pages'), h('label', { for: 'page-filter' }, 'Show'), filter),
    pagesBox,
  );
  void load();
  return {
    leave() {
      off();
      clearInterval(ticker);
      if (reloadTimer) clearTimeout(reloadTimer);
    },
  };
}
