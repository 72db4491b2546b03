// Crawls, newest first, each row live; and the form that starts one.
import type { CrawlRequest, Started } from '../api';
import type { CrawlStatus } from '../events';
import { h, fill, num, empty, table } from '../dom';
import { get, post, explain } from '../http';
import { isTerminal, live } from '../live';
import { bar, counts, elapsed, stage, statusBadge, stopButton } from './common';
import type { View } from '../main';

interface CrawlList {
  crawls: CrawlStatus[];
  nextCursor: string | null;
}

const lines = (v: string): string[] =>
  v
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);

function startForm(onStarted: (s: Started) => void): HTMLElement {
  const message = h('p', { id: 'start-error', class: 'error', role: 'alert', hidden: true });
  const field = (label: string, id: string, input: HTMLElement, hint?: string) =>
    h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', { id: `${id}-hint` }, hint) : null);
  const url = h('input', { id: 'crawl-url', name: 'url', type: 'url', required: true, placeholder: 'https://docs.example.com/', 'aria-describedby': 'start-error' });
  const type = h(
    'select',
    { id: 'crawl-type', name: 'crawlType' },
    ['auto', 'page', 'sitemap', 'llms_txt', 'recursive'].map((t) => h('option', { value: t }, t.replace('_', '.'))),
  );
  const depth = h('input', { id: 'crawl-depth', name: 'maxDepth', type: 'number', min: 0, placeholder: 'default' });
  const pages = h('input', { id: 'crawl-pages', name: 'maxPages', type: 'number', min: 1, placeholder: 'default' });
  const include = h('textarea', { id: 'crawl-include', name: 'include', rows: 1, placeholder: '/docs/**', 'aria-describedby': 'crawl-include-hint' });
  const exclude = h('textarea', { id: 'crawl-exclude', name: 'exclude', rows: 1, placeholder: '**/changelog/**', 'aria-describedby': 'crawl-exclude-hint' });
  const render = h(
    'select',
    { id: 'crawl-render', name: 'render' },
    ['http', 'auto', 'browser'].map((t) => h('option', { value: t }, t)),
  );
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Start crawl');
  const form = h(
    'form',
    { class: 'start', 'aria-labelledby': 'start-title', novalidate: true },
    h('h2', { id: 'start-title' }, 'Start a crawl'),
    h(
      'div',
      { class: 'grid' },
      h('div', { class: 'field wide' }, h('label', { for: 'crawl-url' }, 'URL'), url),
      field('Type', 'crawl-type', type),
      field('Max depth', 'crawl-depth', depth),
      field('Max pages', 'crawl-pages', pages),
      field('Render', 'crawl-render', render),
      field('Include', 'crawl-include', include, 'URL globs, one a line'),
      field('Exclude', 'crawl-exclude', exclude, 'URL globs, one a line'),
    ),
    message,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    message.hidden = true;
    // The API judges every field and says what is wrong, in its words.
    const req: Partial<CrawlRequest> & { url: string } = { url: url.value.trim(), crawlType: type.value as CrawlRequest['crawlType'], render: render.value as CrawlRequest['render'] };
    if (depth.value !== '') req.maxDepth = Number(depth.value);
    if (pages.value !== '') req.maxPages = Number(pages.value);
    if (include.value.trim()) req.include = lines(include.value);
    if (exclude.value.trim()) req.exclude = lines(exclude.value);
    submit.disabled = true;
    try {
      const started = await post<Started>('/api/crawls', req);
      onStarted(started);
    } catch (e) {
      message.textContent = `Not started: ${explain(e)}`;
      message.hidden = false;
      url.focus();
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export function crawlsView(root: HTMLElement): View {
  const rows = new Map<string, HTMLTableRowElement>();
  const status = new Map<string, CrawlStatus>();
  const note = h('p', { class: 'error', role: 'alert', hidden: true });
  const report = (msg: string) => {
    note.textContent = msg;
    note.hidden = false;
  };
  const body = h('div', { id: 'crawl-list' });
  let cursor: string | null = null;
  let order: string[] = [];

  const row = (s: CrawlStatus): HTMLTableRowElement =>
    h(
      'tr',
      { 'data-id': s.progressId, 'data-status': s.status },
      h('td', { class: 'url' }, h('a', { href: `#/crawls/${s.progressId}` }, s.url)),
      h('td', {}, statusBadge(s)),
      h('td', { 'data-field': 'stage' }, stage(s)),
      h('td', {}, bar(s)),
      h('td', { 'data-field': 'pages', title: 'crawled / failed / skipped' }, counts(s)),
      h('td', { 'data-field': 'chunks' }, num(s.chunksStored)),
      h('td', { 'data-field': 'elapsed' }, elapsed(s)),
      h('td', {}, stopButton(s, report)),
    );

  const draw = () => {
    if (order.length === 0) {
      fill(body, empty('No crawls yet. Start one with the form above.'));
      return;
    }
    const trs = order.map((id) => {
      const s = status.get(id)!;
      const tr = row(s);
      rows.set(id, tr);
      return tr;
    });
    const more = cursor
      ? h('button', { type: 'button', onclick: () => void load(true) }, 'Show older crawls')
      : null;
    fill(
      body,
      table('Crawls, newest first', ['URL', 'Status', 'Stage', 'Progress', 'Crawled / failed / skipped', 'Chunks', 'Elapsed', ''], trs),
      more,
    );
  };

  const replaceRow = (s: CrawlStatus) => {
    const old = rows.get(s.progressId);
    if (!old) return;
    const tr = row(s);
    // Keep keyboard focus on the row's button or link across the redraw.
    const focused = old.contains(document.activeElement) ? document.activeElement?.tagName : null;
    old.replaceWith(tr);
    rows.set(s.progressId, tr);
    if (focused) (tr.querySelector(focused.toLowerCase()) as HTMLElement | null)?.focus();
  };

  const track = (s: CrawlStatus, front: boolean) => {
    if (!status.has(s.progressId)) {
      if (front) order.unshift(s.progressId);
      else order.push(s.progressId);
    }
    status.set(s.progressId, s);
    if (!isTerminal(s)) live.follow(s.progressId);
  };

  async function load(more = false): Promise<void> {
    try {
      const q = more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const page = await get<CrawlList>(`/api/crawls?limit=50${q}`);
      if (!more) {
        order = [];
        status.clear();
      }
      for (const s of page.crawls) track(s, false);
      cursor = page.nextCursor;
      note.hidden = true;
      draw();
    } catch (e) {
      report(`Could not load the crawls: ${explain(e)}`);
    }
  }

  const ticker = setInterval(() => {
    for (const [id, s] of status) {
      if (isTerminal(s)) continue;
      const cell = rows.get(id)?.querySelector('[data-field=elapsed]');
      if (cell) cell.textContent = elapsed(s);
    }
  }, 1000);

  const off = live.listen({
    progress(s) {
      if (!status.has(s.progressId)) {
        track(s, true);
        draw();
        return;
      }
      status.set(s.progressId, s);
      replaceRow(s);
    },
    active(crawls) {
      let added = false;
      for (const s of crawls) {
        if (!status.has(s.progressId)) {
          track(s, true);
          added = true;
        }
        // Running crawls not in a room yet (started elsewhere) get one.
        live.follow(s.progressId);
      }
      if (added) draw();
    },
    reconnected() {
      void load();
    },
  });

  fill(
    root,
    h('h1', { tabindex: -1 }, 'Crawls'),
    startForm((started) => {
      live.follow(started.progressId);
      void get<CrawlStatus>(`/api/crawls/${started.progressId}`).then((s) => {
        if (!status.has(s.progressId)) {
          track(s, true);
          draw();
        }
      }, () => {});
    }),
    h('h2', {}, 'Recent crawls'),
    note,
    body,
  );
  body.append(h('p', { class: 'empty' }, 'Loading…'));
  void load();
  return {
    leave() {
      off();
      clearInterval(ticker);
    },
  };
}
