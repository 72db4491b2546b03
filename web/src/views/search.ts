// Search what was stored: chunks (hybrid, vector or text), or code examples
// by language.
import type { ChunkHit, CodeHit, Mode, SearchRequest, Source } from '../api';
import { h, fill, empty, outLink } from '../dom';
import { get, post, explain } from '../http';
import type { View } from '../main';

const LANGUAGES = ['', 'bash', 'c', 'cpp', 'css', 'go', 'html', 'java', 'javascript', 'json', 'python', 'rust', 'sql', 'toml', 'typescript', 'yaml'];

export function searchView(root: HTMLElement, params: URLSearchParams): View {
  const results = h('div', { id: 'results', 'aria-live': 'polite' });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const query = h('input', { id: 'q', name: 'query', type: 'search', required: true, maxlength: 2000, value: params.get('q') ?? '' });
  const kind = h(
    'select',
    { id: 'kind' },
    h('option', { value: 'chunks' }, 'Pages'),
    h('option', { value: 'code' }, 'Code examples'),
  );
  const mode = h(
    'select',
    { id: 'mode' },
    (['hybrid', 'text', 'vector'] as Mode[]).map((m) => h('option', { value: m }, m)),
  );
  const source = h('select', { id: 'source' }, h('option', { value: '' }, 'All sources'));
  const language = h('select', { id: 'language' }, LANGUAGES.map((l) => h('option', { value: l }, l || 'Any language')));
  const modeField = h('div', { class: 'field' }, h('label', { for: 'mode' }, 'Mode'), mode);
  const sourceField = h('div', { class: 'field' }, h('label', { for: 'source' }, 'Source'), source);
  const languageField = h('div', { class: 'field', hidden: true }, h('label', { for: 'language' }, 'Language'), language);
  kind.addEventListener('change', () => {
    const code = kind.value === 'code';
    languageField.hidden = !code;
    modeField.hidden = code;
    sourceField.hidden = code;
  });

  // The source filter takes a host; each source's URL gives one.
  void get<{ sources: Source[] }>('/api/sources?limit=100').then(
    (r) => {
      const hosts = new Set<string>();
      for (const s of r.sources) {
        try {
          hosts.add(new URL(s.url).host);
        } catch {
          // Not a URL: nothing to filter by.
        }
      }
      for (const host of [...hosts].sort()) source.append(h('option', { value: host }, host));
    },
    () => {},
  );

  const form = h(
    'form',
    { role: 'search', class: 'search', novalidate: true },
    h('div', { class: 'grid' }, h('div', { class: 'field wide' }, h('label', { for: 'q' }, 'Search for'), query), h('div', { class: 'field' }, h('label', { for: 'kind' }, 'In'), kind), modeField, sourceField, languageField),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search')),
  );

  const chunkHit = (r: ChunkHit) =>
    h(
      'li',
      {},
      h('h3', {}, outLink(r.url, r.title || r.url)),
      h('p', { class: 'hit-url' }, r.url, h('span', { class: 'score' }, ` score ${r.score.toFixed(3)}`)),
      h('p', { class: 'snippet' }, r.content.length > 600 ? `${r.content.slice(0, 600)}…` : r.content),
    );
  const codeHit = (r: CodeHit) =>
    h(
      'li',
      {},
      h('h3', {}, outLink(r.url), ' ', h('span', { class: 'badge' }, r.language || 'text')),
      r.contextBefore ? h('p', { class: 'snippet' }, r.contextBefore) : null,
      h('pre', {}, h('code', {}, r.code)),
    );

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    fill(results, h('p', { class: 'empty' }, 'Searching…'));
    try {
      let items: HTMLElement[];
      if (kind.value === 'code') {
        const q = new URLSearchParams({ query: query.value, limit: '20' });
        if (language.value) q.set('language', language.value);
        const r = await get<{ results: CodeHit[] }>(`/api/code-examples?${q}`);
        items = r.results.map(codeHit);
      } else {
        const req: SearchRequest = { query: query.value, mode: mode.value as Mode, limit: 20 };
        if (source.value) req.source = source.value;
        const r = await post<{ results: ChunkHit[] }>('/api/search', req);
        items = r.results.map(chunkHit);
      }
      fill(results, items.length ? h('ol', { class: 'hits' }, items) : empty('Nothing found.'));
    } catch (e) {
      fill(results);
      error.textContent = explain(e);
      error.hidden = false;
    }
  });

  fill(root, h('h1', { tabindex: -1 }, 'Search'), form, error, results);
  if (query.value) form.requestSubmit();
  return {};
}
