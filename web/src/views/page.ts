// One stored page: its markdown rendered (sanitised) and raw, its chunks and
// its code examples.
import DOMPurify from 'dompurify';
import { marked } from 'marked';
import type { PageContent } from '../api';
import { h, fill, empty, when, outLink, num } from '../dom';
import { get, explain } from '../http';
import type { View } from '../main';

/** Crawled markdown is another site's text: it may carry HTML and scripts.
 * Rendered, then sanitised, then shown; links open outside the dashboard. */
function rendered(markdown: string): HTMLElement {
  const html = marked.parse(markdown, { async: false, gfm: true });
  const box = h('div', { class: 'markdown' });
  box.innerHTML = DOMPurify.sanitize(html, { FORBID_TAGS: ['style', 'form', 'input', 'button'], FORBID_ATTR: ['style'] });
  for (const a of box.querySelectorAll('a')) {
    a.target = '_blank';
    a.rel = 'noopener noreferrer external';
  }
  return box;
}

function tabs(items: [string, string, () => HTMLElement][]): HTMLElement {
  const list = h('div', { role: 'tablist', 'aria-label': 'Page content' });
  const panels: HTMLElement[] = [];
  const buttons: HTMLButtonElement[] = [];
  const select = (i: number, focus: boolean) => {
    buttons.forEach((b, j) => {
      b.setAttribute('aria-selected', String(i === j));
      b.tabIndex = i === j ? 0 : -1;
      panels[j].hidden = i !== j;
    });
    if (!panels[i].firstChild) panels[i].append(items[i][2]());
    if (focus) buttons[i].focus();
  };
  items.forEach(([id, label], i) => {
    const b = h('button', { type: 'button', role: 'tab', id: `tab-${id}`, 'aria-controls': `panel-${id}` }, label);
    b.addEventListener('click', () => select(i, false));
    // Arrow keys move between tabs, as a tab list does.
    b.addEventListener('keydown', (e) => {
      const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (step) select((i + step + items.length) % items.length, true);
    });
    buttons.push(b);
    list.append(b);
    panels.push(h('div', { role: 'tabpanel', id: `panel-${id}`, 'aria-labelledby': `tab-${id}`, tabindex: 0, hidden: true }));
  });
  select(0, false);
  return h('div', { class: 'tabs' }, list, panels);
}

export function pageView(root: HTMLElement, id: string): View {
  fill(root, h('h1', { tabindex: -1 }, 'Page'), h('p', { class: 'empty' }, 'Loading…'));
  void (async () => {
    let p: PageContent;
    try {
      p = await get<PageContent>(`/api/pages/${encodeURIComponent(id)}`);
    } catch (e) {
      fill(root, h('h1', { tabindex: -1 }, 'Page'), h('p', { class: 'error', role: 'alert' }, explain(e)));
      return;
    }
    const md = p.markdown ?? '';
    fill(
      root,
      h('p', { class: 'crumbs' }, h('a', { href: `#/crawls/${p.crawlId}` }, '← Its crawl')),
      h('h1', { tabindex: -1 }, p.title || p.url),
      h(
        'dl',
        { class: 'stats' },
        [
          ['URL', outLink(p.finalUrl ?? p.url)],
          ['Status', `${p.status}${p.httpStatus ? ` (HTTP ${p.httpStatus})` : ''}`],
          ['Fetched', when(p.fetchedAt)],
          ['Chunks', num(p.chunks.length)],
          ['Code examples', num(p.codeExamples.length)],
        ].map(([label, value]) => h('div', {}, h('dt', {}, label), h('dd', {}, value))),
      ),
      p.description ? h('p', { class: 'message' }, p.description) : null,
      tabs([
        ['rendered', 'Rendered', () => (md ? rendered(md) : empty('This page has no stored content.'))],
        ['raw', 'Markdown', () => h('pre', { class: 'raw' }, h('code', {}, md))],
        [
          'chunks',
          `Chunks (${p.chunks.length})`,
          () =>
            p.chunks.length === 0
              ? empty('No chunks.')
              : h(
                  'ol',
                  { class: 'chunks' },
                  p.chunks.map((c) =>
                    h('li', {}, c.headingPath ? h('p', { class: 'heading-path' }, c.headingPath) : null, h('pre', {}, c.content)),
                  ),
                ),
        ],
        [
          'code',
          `Code examples (${p.codeExamples.length})`,
          () =>
            p.codeExamples.length === 0
              ? empty('No code examples.')
              : h(
                  'ol',
                  { class: 'chunks' },
                  p.codeExamples.map((c) =>
                    h(
                      'li',
                      {},
                      h('p', { class: 'heading-path' }, c.language || 'text'),
                      c.contextBefore ? h('p', {}, c.contextBefore) : null,
                      h('pre', {}, h('code', {}, c.code)),
                    ),
                  ),
                ),
        ],
      ]),
    );
  })();
  return {};
}
