// Small DOM helpers: every text goes in as text, never as HTML; the only
// HTML the page inserts is sanitised markdown (views/page.ts).

type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;
export type Child = Node | string | number | null | undefined | false;

/** An element with attributes (`on*` are listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no #${id} in the page`);
  return el as T;
}

const number = new Intl.NumberFormat();
export const num = (n: number | null | undefined): string => number.format(n ?? 0);

/** `1 h 02 min`, `3 min 04 s`, `5 s`. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** A link out of the dashboard: new tab, no referrer, no opener. */
export function outLink(url: string, text?: string): HTMLAnchorElement {
  return h('a', { href: url, target: '_blank', rel: 'noopener noreferrer external' }, text ?? url);
}

/** An empty-state line for a list. */
export const empty = (text: string): HTMLParagraphElement => h('p', { class: 'empty' }, text);

/** A table in a box that scrolls sideways on a narrow screen. */
export function table(caption: string, head: string[], rows: HTMLTableRowElement[]): HTMLElement {
  return h(
    'div',
    { class: 'scroll', role: 'region', 'aria-label': caption, tabindex: 0 },
    h(
      'table',
      {},
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows),
    ),
  );
}


/** Asks before something that cannot be undone; Escape or Cancel says no. */
export function confirmDialog(title: string, text: string, action: string): Promise<boolean> {
  const confirmBox = byId<HTMLDialogElement>('confirm-dialog');
  byId('confirm-title').textContent = title;
  byId('confirm-text').textContent = text;
  byId('confirm-ok').textContent = action;
  confirmBox.returnValue = '';
  confirmBox.showModal();
  return new Promise((resolve) => {
    confirmBox.addEventListener('close', () => resolve(confirmBox.returnValue === 'confirm'), { once: true });
  });
}
