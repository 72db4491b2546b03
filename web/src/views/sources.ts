// Sources: what each start URL keeps; refresh one, or delete it whole.
import type { Source, Started, Removed } from '../api';
import { h, fill, num, empty, table, when, outLink, confirmDialog } from '../dom';
import { get, post, del, explain } from '../http';
import { live } from '../live';
import type { View } from '../main';

interface SourceList {
  sources: Source[];
  nextCursor: string | null;
}

function schedule(s: Source): string {
  const every = s.refreshEvery ? `every ${s.refreshEvery}` : s.cron ? `cron ${s.cron}` : null;
  if (!every) return 'none';
  return s.nextRefreshAt ? `${every}; next ${when(s.nextRefreshAt)}` : every;
}

export function sourcesView(root: HTMLElement): View {
  const note = h('p', { class: 'notice', role: 'status', hidden: true });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const body = h('div', { id: 'source-list' }, h('p', { class: 'empty' }, 'Loading…'));
  const say = (el: HTMLElement, msg: string) => {
    el.textContent = msg;
    el.hidden = false;
  };
  let sources: Source[] = [];
  let cursor: string | null = null;

  const row = (s: Source) => {
    const refresh = h('button', { type: 'button', class: 'small', 'aria-label': `Refresh ${s.name}` }, 'Refresh');
    refresh.addEventListener('click', async () => {
      refresh.disabled = true;
      try {
        const started = await post<Started>(`/api/sources/${s.id}/refresh`);
        live.follow(started.progressId);
        note.replaceChildren('Refresh of ', s.name, ' started: ', h('a', { href: `#/crawls/${started.progressId}` }, 'watch it'), '.');
        note.hidden = false;
        void load();
      } catch (e) {
        say(error, `Could not refresh ${s.name}: ${explain(e)}`);
      } finally {
        refresh.disabled = false;
      }
    });
    const remove = h('button', { type: 'button', class: 'small danger', 'aria-label': `Delete ${s.name}` }, 'Delete');
    remove.addEventListener('click', async () => {
      const ok = await confirmDialog(
        `Delete ${s.name}?`,
        `Its ${num(s.pages)} pages, ${num(s.chunks)} chunks and every crawl of it are removed. Running crawls of it are stopped first.`,
        'Delete',
      );
      if (!ok) return;
      remove.disabled = true;
      try {
        const r = await del<{ removed: Removed }>(`/api/sources/${s.id}`);
        say(note, `Deleted ${s.name}: ${num(r.removed.pages)} pages, ${num(r.removed.chunks)} chunks, ${num(r.removed.crawls)} crawls.`);
        sources = sources.filter((x) => x.id !== s.id);
        draw();
      } catch (e) {
        remove.disabled = false;
        say(error, `Could not delete ${s.name}: ${explain(e)}`);
      }
    });
    const last = s.lastCrawl;
    return h(
      'tr',
      { 'data-id': s.id },
      h('td', {}, h('strong', {}, s.name), h('br'), h('small', {}, outLink(s.url))),
      h('td', {}, num(s.pages)),
      h('td', {}, num(s.chunks)),
      h('td', {}, num(s.codeExamples)),
      h('td', {}, last ? h('a', { href: `#/crawls/${last.id}` }, `${last.status}${last.finishedAt ? `, ${when(last.finishedAt)}` : ''}`) : '—'),
      h('td', {}, schedule(s)),
      h('td', { class: 'buttons' }, refresh, ' ', remove),
    );
  };

  const draw = () => {
    // A redraw (a crawl started or ended) keeps keyboard focus on the same button.
    const focused = document.activeElement;
    const label = focused && body.contains(focused) ? focused.getAttribute('aria-label') : null;
    redraw();
    if (label) {
      for (const b of body.querySelectorAll<HTMLElement>('[aria-label]')) {
        if (b.getAttribute('aria-label') === label) b.focus();
      }
    }
  };

  const redraw = () => {
    if (sources.length === 0) {
      fill(body, empty('No sources yet. Every crawl files what it stores under a source for its start URL.'));
      return;
    }
    fill(
      body,
      table('Sources', ['Source', 'Pages', 'Chunks', 'Code', 'Last crawl', 'Schedule', ''], sources.map(row)),
      cursor ? h('button', { type: 'button', onclick: () => void load(true) }, 'Show more sources') : null,
    );
  };

  async function load(more = false): Promise<void> {
    try {
      const q = more && cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const page = await get<SourceList>(`/api/sources?limit=50${q}`);
      sources = more ? sources.concat(page.sources) : page.sources;
      cursor = page.nextCursor;
      error.hidden = true;
      draw();
    } catch (e) {
      say(error, `Could not load the sources: ${explain(e)}`);
    }
  }

  const off = live.listen({
    active() {
      void load();
    },
    reconnected() {
      void load();
    },
  });
  fill(root, h('h1', { tabindex: -1 }, 'Sources'), note, error, body);
  void load();
  return { leave: off };
}
