// Hash routing: the console is one page at `/`; `#/p/<project>?f=...` names a screen and its
// state, so every screen can be bookmarked, reloaded and shared.

export interface Route {
  path: string[];
  params: URLSearchParams;
}

export function currentRoute(): Route {
  const hash = location.hash.replace(/^#/, '');
  const q = hash.indexOf('?');
  const pathPart = q >= 0 ? hash.slice(0, q) : hash;
  const params = new URLSearchParams(q >= 0 ? hash.slice(q + 1) : '');
  const path = pathPart
    .split('/')
    .filter((p) => p.length > 0)
    .map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  return { path, params };
}

export type Params = Record<string, string | number | undefined | null | Array<string>>;

export function href(path: Array<string | number>, params: Params = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) for (const item of v) q.append(k, item);
    else q.set(k, String(v));
  }
  const qs = q.toString();
  return `#/${path.map((p) => encodeURIComponent(String(p))).join('/')}${qs ? `?${qs}` : ''}`;
}

export function go(path: Array<string | number>, params: Params = {}): void {
  location.hash = href(path, params);
}
