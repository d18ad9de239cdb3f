/**
 * Every request the real morgue 1.24.11 sent (../shared/reference/backtrace-captures/
 * morgue-1.24.11-requests.jsonl) is sent again by our morgue, given the same flags, to a mock
 * coroner: same method, path, query parameters in the same order, content type and body (query
 * JSON compared as text after the "now"-dependent timestamps are checked and masked).
 */

import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

import test from 'ava';

import { morgue, type MockServer, type Recorded, startMock, tempDir, TOKEN } from './helpers.js';

const CAPTURES = process.env.MORGUE_CAPTURES ?? '/work/shared/reference/backtrace-captures/morgue-1.24.11-requests.jsonl';

interface Capture {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

function loadCaptures(): Capture[] {
  let text: string;
  try {
    text = readFileSync(CAPTURES, 'utf8');
  } catch (err) {
    throw new Error(`the morgue captures are missing (${CAPTURES}: ${(err as Error).message}); set MORGUE_CAPTURES to their path`);
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Capture);
}

/** The flags that made each captured request (the capture file records requests, not command lines). */
const COMMANDS: Array<{ args: string[]; env?: NodeJS.ProcessEnv; login?: boolean }> = [
  { args: ['login', '@URL'], env: { MORGUE_USERNAME: 'admin', MORGUE_PASSWORD: 'secret' }, login: false },
  { args: ['login', '@URL', `--token=${TOKEN}`], login: false },
  { args: ['list', 'myproj'] },
  {
    args: [
      'list', 'myproj', '--filter=application,equal,demo', '--limit=10', '--sort=-;count', '--factor=fingerprint', '--head=callstack', '--object=fingerprint',
      '--histogram=hostname', '--distribution=hostname,3', '--unique=hostname', '--count=hostname', '--sum=process.age', '--bin=process.age', '--range=process.age',
    ],
  },
  {
    args: [
      'list', 'myproj', '--filter=classifiers,contains,abort', '--filter=hostname,is-set', '--limit=2', '--offset=1', '--sort=timestamp', '--sort=-hostname',
      '--select=hostname', '--select=timestamp', '--select=callstack',
    ],
  },
  { args: ['list', 'myproj', '--limit=1', '--select-wildcard=physical'] },
  { args: ['describe', 'myproj'] },
  { args: ['put', 'myproj', 'r.json', '--format=json'] },
  { args: ['put', 'myproj', 'r.dmp', '--format=minidump', '--kv=a:1,b:2', '--attachment=note.txt'] },
  { args: ['put', 'myproj', 'r.json.gz', '--format=json', '--compression=gzip'] },
  { args: ['get', 'myproj', '3'] },
  { args: ['logout'] },
];

const MONTH = 30 * 24 * 3600;

/**
 * Checks the timestamps that depend on when the query was built (at-least now-1M; bins from there
 * to now) and replaces them with a marker, so two runs at different times compare equal.
 */
function maskTimes(query: Record<string, unknown>, nowSeconds: number | null, t: { true(v: boolean, m?: string): void }): string {
  const copy = JSON.parse(JSON.stringify(query)) as Record<string, any>;
  for (const conjunction of copy.filter ?? []) {
    for (const term of conjunction.timestamp ?? []) {
      if (term[0] === 'at-least' && typeof term[1] === 'number') {
        if (nowSeconds !== null) t.true(Math.abs(term[1] - (nowSeconds - MONTH)) < 120, `at-least ${term[1]} is not a month before now`);
        term[1] = '<now-1M>';
      }
    }
  }
  for (const op of copy.fold?.timestamp ?? []) {
    if (op[0] === 'bin' && op.length === 4) {
      t.true(op[3] - op[2] === MONTH, `bin ${JSON.stringify(op)} does not span a month`);
      if (nowSeconds !== null) t.true(Math.abs(op[3] - nowSeconds) < 120, `bin ${JSON.stringify(op)} does not end now`);
      op[2] = '<now-1M>';
      op[3] = '<now>';
    }
  }
  return JSON.stringify(copy);
}

interface Part {
  name: string;
  filename?: string;
  content: string;
}

function multipartParts(contentType: string, body: string): Part[] {
  const boundary = /boundary=(.+)$/.exec(contentType)?.[1];
  if (!boundary) throw new Error(`no boundary in ${contentType}`);
  const parts: Part[] = [];
  for (const chunk of body.split(`--${boundary}`)) {
    if (chunk === '' || chunk.startsWith('--')) continue;
    const [head, ...rest] = chunk.replace(/^\r\n/, '').split('\r\n\r\n');
    const content = rest.join('\r\n\r\n').replace(/\r\n$/, '');
    const name = /name="([^"]*)"/.exec(head ?? '')?.[1] ?? '';
    const filename = /filename="([^"]*)"/.exec(head ?? '')?.[1];
    parts.push(filename === undefined ? { name, content } : { name, filename, content });
  }
  return parts;
}

function queryPairs(p: string): Array<[string, string]> {
  return [...new URL(p, 'http://x').searchParams.entries()];
}

function header(headers: Record<string, unknown>, name: string): string | undefined {
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  const v = key === undefined ? undefined : headers[key];
  return v === undefined ? undefined : String(v);
}

let mock: MockServer;
test.before(async () => {
  mock = await startMock();
});
test.after.always(async () => {
  await mock?.close();
});

const captures = loadCaptures();

test('the capture file holds the twelve requests this replay knows the flags of', (t) => {
  t.is(captures.length, COMMANDS.length);
});

for (const [i, capture] of captures.entries()) {
  const command = COMMANDS[i];
  if (!command) continue;
  test.serial(`capture ${i}: ${capture.method} ${capture.path.split('?')[0]} (morgue ${command.args.join(' ')})`, async (t) => {
    const dir = tempDir();
    try {
      writeFileSync(path.join(dir, 'r.json'), '{"uuid":"x"}\n');
      writeFileSync(path.join(dir, 'r.dmp'), 'MDMP');
      writeFileSync(path.join(dir, 'note.txt'), 'att\n');
      writeFileSync(path.join(dir, 'r.json.gz'), gzipSync('{"uuid":"x"}\n'));
      if (command.login !== false) {
        const login = await morgue(['login', mock.url], { configDir: dir, env: { MORGUE_USERNAME: 'admin', MORGUE_PASSWORD: 'secret' } });
        t.is(login.code, 0, login.stderr);
      }
      const before = mock.requests.length;
      const args = command.args.map((a) => (a === '@URL' ? mock.url : a));
      const nowSeconds = Math.floor(Date.now() / 1000);
      const run = await morgue(args, { configDir: dir, env: command.env });
      t.is(run.code, 0, `stderr: ${run.stderr}`);
      const sent = mock.requests.slice(before);
      t.is(sent.length, 1, `expected one request, got ${sent.map((r) => `${r.method} ${r.path}`).join(', ')}`);
      const ours = sent[0] as Recorded;

      t.is(ours.method, capture.method);
      t.is(ours.path.split('?')[0], capture.path.split('?')[0]);
      t.deepEqual(queryPairs(ours.path), queryPairs(capture.path), 'query parameters, in order');

      const theirType = header(capture.headers, 'content-type');
      const ourType = header(ours.headers, 'content-type');
      if (theirType?.startsWith('multipart/form-data')) {
        t.true(ourType?.startsWith('multipart/form-data'), ourType);
        const theirs = multipartParts(theirType, capture.body);
        const mine = multipartParts(ourType ?? '', ours.body.toString('utf8'));
        t.deepEqual(mine, theirs, 'form fields: names, file names and contents, in order');
        return;
      }
      t.is(ourType, theirType);
      t.is(header(ours.headers, 'content-encoding'), header(capture.headers, 'content-encoding'));
      if (theirType === 'application/json') {
        const theirs = maskTimes(JSON.parse(capture.body) as Record<string, unknown>, null, t);
        const mine = maskTimes(JSON.parse(ours.body.toString('utf8')) as Record<string, unknown>, nowSeconds, t);
        t.is(mine, theirs);
      } else if (header(capture.headers, 'content-encoding') === 'gzip') {
        // The capture stored the gzip bytes as lossy text; compare what they decompress to.
        t.is(gunzipSync(ours.body).toString('utf8'), '{"uuid":"x"}\n');
        t.is(ours.body.subarray(0, 2).toString('hex'), '1f8b', 'sent as it is, not compressed twice');
      } else {
        t.is(ours.body.toString('utf8'), capture.body);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
