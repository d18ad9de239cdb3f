/**
 * bin/morgue against a real coroner (`bin/coroner serve --data <tmp> --listen 127.0.0.1:0`, first
 * start with CORONER_ADMIN_PASSWORD): login by password and by token, the empty project, reports
 * submitted with `morgue put` and found again with every list flag, describe, get, set (a group's
 * state), delete, bad credentials, a session the server ended, an unreachable server.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import test from 'ava';

import { packageRoot } from '../../ts/native/index.js';
import { morgue, type MorgueRun, tempDir } from './helpers.js';

const PASSWORD = 'correct horse battery staple';
const NOW = Math.floor(Date.now() / 1000);
const DAY = 86400;

let server: ChildProcess | undefined;
let url = '';
let dataDir = '';
let home = '';
let serverLog = '';

/** Starts coroner and resolves with the URL it prints, or rejects with its output. */
function startCoroner(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(packageRoot, 'bin', 'coroner'), 'serve', '--data', dataDir, '--listen', '127.0.0.1:0'], {
      env: { ...process.env, CORONER_ADMIN_PASSWORD: PASSWORD },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server = child;
    const timer = setTimeout(() => reject(new Error(`coroner did not say where it listens within 60 s:\n${serverLog}`)), 60_000);
    const onData = (chunk: Buffer) => {
      serverLog += chunk.toString();
      const m = /listening on (https?:\/\/\S+)/.exec(serverLog);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`coroner exited with ${code} before listening:\n${serverLog}`));
    });
  });
}

function run(args: string[], env: NodeJS.ProcessEnv = {}, configDir = home): Promise<MorgueRun> {
  return morgue(args, { configDir, env });
}

async function ok(args: string[], env: NodeJS.ProcessEnv = {}, configDir = home): Promise<string> {
  const r = await run(args, env, configDir);
  if (r.code !== 0) throw new Error(`morgue ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Rows of `list --select=... --json`, all ages. */
async function rows(extra: string[]): Promise<Array<Record<string, unknown>>> {
  const out = JSON.parse(await ok(['list', 'blackhole', '--age=1y', '--json', ...extra])) as Record<string, Array<Record<string, unknown>>>;
  return out['*'] ?? [];
}

interface Report {
  name: string;
  uuid: string;
  timestamp: number;
  hostname: string;
  application?: string;
  age: number;
  frames: string[];
}

const REPORTS: Report[] = [
  { name: 'r1', uuid: randomUUID(), timestamp: NOW - 3600, hostname: 'web1', application: 'demo', age: 10, frames: ['crash_a', 'main'] },
  { name: 'r2', uuid: randomUUID(), timestamp: NOW - 1200, hostname: 'web2', application: 'demo', age: 20, frames: ['crash_a', 'main'] },
  { name: 'r3', uuid: randomUUID(), timestamp: NOW - 60, hostname: 'web1', application: 'other', age: 30, frames: ['crash_b', 'worker', 'main'] },
  { name: 'r4', uuid: randomUUID(), timestamp: NOW - 40 * DAY, hostname: 'web3', age: 40, frames: ['crash_b', 'worker', 'main'] },
];

function reportJson(r: Report): string {
  const attributes: Record<string, unknown> = { hostname: r.hostname, 'process.age': r.age };
  if (r.application) attributes.application = r.application;
  return JSON.stringify({
    uuid: r.uuid,
    timestamp: r.timestamp,
    lang: 'c',
    langVersion: '11',
    agent: 'morgue-test',
    agentVersion: '1',
    mainThread: 'main',
    threads: { main: { name: 'main', fault: true, stack: r.frames.map((funcName) => ({ funcName })) } },
    attributes,
    classifiers: [r.frames[0] === 'crash_a' ? 'SIGSEGV' : 'abort'],
  });
}

test.before(async () => {
  dataDir = tempDir('morgue-coroner-data-');
  home = tempDir('morgue-coroner-home-');
  url = await startCoroner();
});

test.after.always(() => {
  if (server && server.exitCode === null) server.kill('SIGTERM');
  for (const dir of [dataDir, home]) if (dir) rmSync(dir, { recursive: true, force: true });
});

test.serial('login with the admin password, and an empty project prints only the footer', async (t) => {
  const login = await run(['login', url], { MORGUE_USERNAME: 'admin', MORGUE_PASSWORD: PASSWORD });
  t.is(login.code, 0, login.stderr);
  t.is(login.stdout, `Logged in as admin to ${url} (universe local).\n`);
  const session = JSON.parse(readFileSync(path.join(home, 'current.json'), 'utf8')) as { config: { token: string }; endpoint: string; submissionEndpoint: string };
  t.is(session.endpoint, url);
  t.is(session.submissionEndpoint, `${url}/post`);
  const empty = await run(['list', 'blackhole']);
  t.is(empty.code, 0, empty.stderr);
  t.regex(empty.stdout, /^admin: local\/blackhole as of 1M ago \[\d+ us\]\n$/);
});

test.serial('put: reports by file, then one with an attachment (multipart)', async (t) => {
  const dir = tempDir();
  try {
    const files = REPORTS.map((r) => {
      const file = path.join(dir, `${r.name}.json`);
      writeFileSync(file, reportJson(r));
      return file;
    });
    const put = await run(['put', 'blackhole', ...files, '--format=json']);
    t.is(put.code, 0, put.stderr);
    t.is(put.stdout.split('\n').filter((l) => /: Success: \S+/.test(l)).length, 4, put.stdout);
    // Ingestion is acknowledged before the query cache sees it; wait for all four.
    const deadline = Date.now() + 20_000;
    while ((await rows(['--select=hostname', '--age=1y'])).length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    t.is((await rows(['--select=hostname'])).length, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('list: the guide output — sparkline, first and last occurrence, occurrences, footer', async (t) => {
  const out = await ok(['list', 'blackhole']);
  const lines = out.split('\n');
  t.regex(lines[0] ?? '', /^\* {31}[▁▂▃▄▅▆▇█]{32} 1 minute ago$/);
  t.is(lines[1], `First Occurrence: ${String(new Date((NOW - 3600) * 1000))}`);
  t.is(lines[2], ` Last Occurrence: ${String(new Date((NOW - 60) * 1000))}`);
  t.is(lines[3], '     Occurrences: 3');
  t.is(lines[4], '');
  t.regex(lines[5] ?? '', /^admin: local\/blackhole as of 1M ago \[\d+ us\]$/);
  const selected = await ok(['list', 'blackhole', '--select=hostname', '--filter=hostname,equal,web2']);
  t.regex(selected, /^\*\n#\w+\n {2}hostname: web2\n\nadmin: local\/blackhole as of 1M ago \[\d+ us\]\n$/);
});

test.serial('--age and --time', async (t) => {
  t.is((await rows(['--select=hostname'])).length, 4, '--age=1y');
  const count = async (flags: string[]) => JSON.parse(await ok(['list', 'blackhole', '--select=hostname', '--json', ...flags]))['*']?.length ?? 0;
  t.is(await count([]), 3, 'the default month');
  t.is(await count(['--age=2h']), 3);
  t.is(await count(['--age=30m']), 2);
  t.is(await count(['--age=1m']), 0);
  t.is(await count([`--time=${NOW - 7200} to ${NOW + 60}`]), 3);
  t.is(await count([`--time=${new Date((NOW - 50 * DAY) * 1000).toISOString()} to ${new Date((NOW - 30 * DAY) * 1000).toISOString()}`]), 1);
  const footer = await ok(['list', 'blackhole', '--time=2d ago to now']);
  t.regex(footer, /admin: local\/blackhole with a time range of 2d ago to now \[\d+ us\]\n$/);
});

test.serial('every filter operator selects the objects it should', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['hostname,equal,web1', ['r1', 'r3']],
    ['hostname,not-equal,web1', ['r2', 'r4']],
    ['hostname,regular-expression,^web[12]$', ['r1', 'r2', 'r3']],
    ['hostname,inverse-regular-expression,^web[12]$', ['r4']],
    ['hostname,contains,eb3', ['r4']],
    ['hostname,not-contains,eb3', ['r1', 'r2', 'r3']],
    ['process.age,at-least,20', ['r2', 'r3', 'r4']],
    ['process.age,at-most,20', ['r1', 'r2']],
    ['process.age,greater-than,20', ['r3', 'r4']],
    ['process.age,less-than,20', ['r1']],
    ['application,is-set', ['r1', 'r2', 'r3']],
    ['application,is-not-set', ['r4']],
    ['hostname,equal,WEB1,case-insensitive', ['r1', 'r3']],
  ];
  const byAge = new Map(REPORTS.map((r) => [r.age, r.name]));
  for (const [filter, expected] of cases) {
    const found = (await rows(['--select=process.age', `--filter=${filter}`])).map((r) => byAge.get(Number(r['process.age']))).sort();
    t.deepEqual(found, expected, filter);
  }
});

test.serial('--factor with every fold flag, --sort on a fold, and the text the folds print', async (t) => {
  const folds = [
    '--head=callstack', '--tail=hostname', '--first=hostname', '--last=hostname', '--object=fingerprint', '--histogram=hostname', '--distribution=hostname,2',
    '--unique=hostname', '--mean=process.age', '--min=process.age', '--max=process.age', '--sum=process.age', '--bin=process.age', '--range=process.age', '--count=hostname',
  ];
  const args = ['list', 'blackhole', '--age=1y', '--factor=fingerprint', '--sort=-process.age;5', ...folds];
  const json = JSON.parse(await ok([...args, '--json'])) as Record<string, Record<string, any>>;
  const groups = Object.values(json);
  t.is(groups.length, 2);
  const [b, a] = groups as [Record<string, any>, Record<string, any>];
  t.is(b['sum(process.age)'][0], 70, 'sorted by sum descending: crash_b (30 + 40) first');
  t.is(a['sum(process.age)'][0], 30);
  t.is(a.count, 2);
  t.deepEqual(a['range(process.age)'], [10, 20]);
  t.deepEqual(a['min(process.age)'], [10]);
  t.deepEqual(a['max(process.age)'], [20]);
  t.deepEqual(a['mean(process.age)'], [15]);
  t.deepEqual(a['unique(hostname)'], [2]);
  t.deepEqual([...a['histogram(hostname)']].sort(), [['web1', 1], ['web2', 1]]);
  t.is(a['distribution(hostname)'][0].keys, 2);
  t.deepEqual(a['first(hostname)'], ['web1']);
  t.deepEqual(a['last(hostname)'], ['web2']);
  t.deepEqual(JSON.parse(a['head(callstack)'][0]).frame, ['crash_a', 'main']);

  const text = await ok(args);
  t.regex(text, /^[0-9a-f]{28}\.\.\. [▁▂▃▄▅▆▇█]{32} .+ ago\n/);
  t.true(text.includes('     Occurrences: 2 (50.00%)\n'), text);
  t.true(text.includes('head(callstack):\n    crash_a ← main\n'), text);
  t.true(text.includes('head(callstack):\n    crash_b ← worker ← main\n'), text);
  t.regex(text, /histogram\(hostname\):\n {2}web\d ▆{40} 1\n {2}web\d ▆{40} 1\n/);
  t.true(text.includes('sum(process.age): 30 sec\n'), text);
  t.true(text.includes('range(process.age): 10 sec - 20 sec (10)\n'), text);
  t.true(text.includes('unique(hostname): 2\n'), text);
  t.true(text.includes('distribution(hostname): 2 keys total, with a count of 2\n'), text);
  // No bounds asked for: the server's default of 8 bins over the group's own range.
  t.regex(text, /bin\(process\.age\):\n( +[\d.]+ sec +[\d.]+ sec [▆ ]{10} \d\n){8}/);
});

test.serial('--select with --sort, --limit, --offset; --select-wildcard; --csv; --raw; --query', async (t) => {
  const page = await rows(['--select=hostname', '--select=process.age', '--sort=-process.age', '--limit=2', '--offset=1']);
  t.deepEqual(page.map((r) => [r.hostname, r['process.age']]), [['web1', 30], ['web2', 20]]);
  const wild = await rows(['--select-wildcard=physical', '--limit=1', '--filter=hostname,equal,web2']);
  t.is(wild.length, 1);
  t.is(wild[0]?.hostname, 'web2');
  t.is(wild[0]?.application, 'demo');
  const csv = await ok(['list', 'blackhole', '--age=1y', '--select=hostname', '--select=process.age', '--sort=process.age', '--csv']);
  t.regex(csv, /^hostname,process\.age,object,id\nweb1,10,\d+,[0-9a-f]+\nweb2,20,\d+,[0-9a-f]+\nweb1,30,\d+,[0-9a-f]+\nweb3,40,\d+,[0-9a-f]+\n$/);
  const raw = JSON.parse(await ok(['list', 'blackhole', '--raw'])) as { response: { values: unknown[] }; _: { user: string; runtime: { filter: { rows: number } } } };
  t.is(raw._.user, 'admin');
  t.is(raw._.runtime.filter.rows, 3);
  const query = JSON.parse(await ok(['list', 'blackhole', '--query', '--unique=hostname'])) as { fold: Record<string, unknown> };
  t.deepEqual(query.fold.hostname, [['unique']]);
});

test.serial('describe, with a substring and as JSON', async (t) => {
  const all = await ok(['describe', 'blackhole', '--all']);
  for (const name of ['timestamp', 'hostname', 'fingerprint', 'callstack', 'process.age']) t.regex(all, new RegExp(`^ *${name.replace('.', '\\.')}: `, 'm'), name);
  const host = await ok(['describe', 'blackhole', 'host']);
  t.regex(host, /^hostname: .* \[hostname\]\n$/);
  const json = JSON.parse(await ok(['describe', 'blackhole', '--json'])) as Array<{ name: string }>;
  t.true(json.some((a) => a.name === 'timestamp'));
});

test.serial('get: the report back by id, as a file and gunzipped from json.gz; an attachment by name', async (t) => {
  const dir = tempDir();
  try {
    const [r1] = await rows(['--select=hostname', '--filter=process.age,equal,10']);
    const id = String(r1?.id);
    const file = path.join(dir, 'r1.json');
    t.is((await run(['get', 'blackhole', id, '-o', file])).code, 0);
    t.is(JSON.parse(readFileSync(file, 'utf8')).uuid, REPORTS[0]?.uuid);
    const gz = await run(['get', 'blackhole', `#${id}`, '--resource=json.gz', '-o', '-']);
    t.is(gz.code, 0, gz.stderr);
    t.is(JSON.parse(gz.stdout).uuid, REPORTS[0]?.uuid);

    const report: Report = { name: 'r5', uuid: randomUUID(), timestamp: NOW - 30, hostname: 'web5', age: 50, frames: ['crash_c', 'main'] };
    writeFileSync(path.join(dir, 'r5.json'), reportJson(report));
    writeFileSync(path.join(dir, 'note.txt'), 'an attached note\n');
    const put = await run(['put', 'blackhole', path.join(dir, 'r5.json'), '--format=json', `--attachment=${path.join(dir, 'note.txt')}`, '--kv=build:42']);
    t.is(put.code, 0, put.stderr);
    let found: Array<Record<string, unknown>> = [];
    const deadline = Date.now() + 20_000;
    while (found.length === 0 && Date.now() < deadline) {
      found = await rows(['--select=build', '--filter=hostname,equal,web5']);
      if (found.length === 0) await new Promise((r) => setTimeout(r, 200));
    }
    t.is(found.length, 1);
    t.is(String(found[0]?.build), '42', '--kv became an attribute');
    const note = await run(['get', 'blackhole', String(found[0]?.id), '--resource=note.txt', '-o', '-']);
    t.is(note.code, 0, note.stderr);
    t.is(note.stdout, 'an attached note\n');
    const missing = await run(['get', 'blackhole', 'ffffff']);
    t.is(missing.code, 1);
    t.regex(missing.stderr, /^morgue: HTTP 404: Not Found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial("set: a group's state, then found by it", async (t) => {
  const [r3] = await rows(['--select=fingerprint', '--filter=process.age,equal,30']);
  const fp = String(r3?.fingerprint);
  t.regex(fp, /^[0-9a-f]{64}$/);
  const unscoped = await run(['set', 'blackhole', 'state=resolved']);
  t.is(unscoped.code, 2);
  const set = await run(['set', 'blackhole', 'state=resolved', `--filter=fingerprint,equal,${fp}`]);
  t.is(set.code, 0, set.stderr);
  t.regex(set.stdout, /^Success(: 2 objects updated)?\.\n$/);
  const resolved = await rows(['--select=process.age', '--filter=state,equal,resolved']);
  t.deepEqual(resolved.map((r) => Number(r['process.age'])).sort(), [30, 40]);
});

test.serial('delete: by id and by filter', async (t) => {
  const before = (await rows(['--select=hostname'])).length;
  const [web5] = await rows(['--select=hostname', '--filter=hostname,equal,web5']);
  const del = await run(['delete', 'blackhole', String(web5?.id)]);
  t.is(del.code, 0, del.stderr);
  t.regex(del.stdout, /^Deleted 1 object from local\/blackhole\.\n$/);
  const byFilter = await run(['delete', 'blackhole', '--filter=hostname,equal,web3']);
  t.is(byFilter.code, 0, byFilter.stderr);
  const deadline = Date.now() + 10_000;
  let after = before;
  while (after !== before - 2 && Date.now() < deadline) {
    after = (await rows(['--select=hostname'])).length;
    if (after !== before - 2) await new Promise((r) => setTimeout(r, 200));
  }
  t.is(after, before - 2);
});

test.serial('login with a token (a live session token), bad credentials, a session the server ended, logout', async (t) => {
  const token = (JSON.parse(readFileSync(path.join(home, 'current.json'), 'utf8')) as { config: { token: string } }).config.token;
  const other = tempDir();
  const copy = tempDir();
  try {
    const byToken = await run(['login', url, `--token=${token}`], {}, other);
    t.is(byToken.code, 0, byToken.stderr);
    t.regex(await ok(['list', 'blackhole'], {}, other), /admin: local\/blackhole as of 1M ago/);

    const bad = await run(['login', url], { MORGUE_USERNAME: 'admin', MORGUE_PASSWORD: 'wrong' }, tempDir());
    t.is(bad.code, 1);
    t.regex(bad.stderr, /^morgue: unable to authenticate: HTTP 401: Unauthorized/);
    t.is(bad.stderr.trimEnd().split('\n').length, 1);
    const badToken = await run(['login', url, '--token=0123456789abcdef0123456789abcdef'], {}, tempDir());
    t.is(badToken.code, 1);
    t.regex(badToken.stderr, /^morgue: unable to authenticate: HTTP 401/);

    // Two copies of one session; logging out of one ends it on the server for both.
    cpSync(path.join(home, 'current.json'), path.join(copy, 'current.json'));
    const out = await run(['logout']);
    t.is(out.code, 0, out.stderr);
    const expired = await run(['list', 'blackhole'], {}, copy);
    t.is(expired.code, 1);
    t.regex(expired.stderr, /^morgue: .*the session is no longer valid; run `morgue login` again\n$/);
    const gone = await run(['list', 'blackhole']);
    t.is(gone.stderr, 'morgue: not logged in: run `morgue login <url>` first\n');
  } finally {
    for (const d of [other, copy]) rmSync(d, { recursive: true, force: true });
  }
});

test('an unreachable coroner: one line, exit 1', async (t) => {
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const dir = tempDir();
  try {
    const r = await run(['login', `http://127.0.0.1:${port}`], { MORGUE_USERNAME: 'admin', MORGUE_PASSWORD: PASSWORD }, dir);
    t.is(r.code, 1);
    t.is(r.stderr, `morgue: cannot reach http://127.0.0.1:${port}: connection refused (is coroner running there?)\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
