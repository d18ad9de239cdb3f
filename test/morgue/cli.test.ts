/**
 * bin/morgue end to end against a mock coroner whose answers each test chooses: the session file,
 * failures (bad credentials, expired session, unreachable server, server errors) as one line with
 * a non-zero exit, output modes, and the refusals of a wrong command line.
 */

import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import test from 'ava';

import { loginAnswer, morgue, type MockServer, sendJson, startMock, tempDir, TOKEN } from './helpers.js';

const CREDS = { MORGUE_USERNAME: 'admin', MORGUE_PASSWORD: 'secret' };

async function withMock(run: (mock: MockServer, dir: string) => Promise<void>): Promise<void> {
  const mock = await startMock();
  const dir = tempDir();
  try {
    await run(mock, dir);
  } finally {
    await mock.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function loggedIn(mock: MockServer, dir: string): Promise<void> {
  const run = await morgue(['login', mock.url], { configDir: dir, env: CREDS });
  if (run.code !== 0) throw new Error(`login failed: ${run.stderr}`);
}

/** A port nothing listens on: bind one, note it, close it. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function oneLine(t: { is(a: unknown, b: unknown, m?: string): void }, stderr: string): void {
  t.is(stderr.trimEnd().split('\n').length, 1, `stderr is not one line: ${stderr}`);
}

test('login saves the session as morgue does: folder 0700, file 0600, config verbatim, endpoint, submission endpoint', async (t) => {
  await withMock(async (mock, dir) => {
    const configDir = path.join(dir, 'cfg');
    const run = await morgue(['login', `${mock.url}/`], { configDir, cwd: dir, env: CREDS });
    t.is(run.code, 0, run.stderr);
    t.is(run.stdout, `Logged in as admin to ${mock.url} (universe local).\n`);
    t.is(statSync(configDir).mode & 0o777, 0o700);
    const file = path.join(configDir, 'current.json');
    t.is(statSync(file).mode & 0o777, 0o600);
    t.deepEqual(JSON.parse(readFileSync(file, 'utf8')), {
      config: loginAnswer(mock.port),
      endpoint: mock.url,
      submissionEndpoint: `http://127.0.0.1:${mock.port}/post`,
    });
    t.is(mock.requests[0]?.body.toString(), 'username=admin&password=secret');
  });
});

test('the submission endpoint prefers https, on the host logged in to; none listed, none saved', async (t) => {
  await withMock(async (mock, dir) => {
    mock.handle('/api/login', (_r, res) => sendJson(res, 200, { ...loginAnswer(mock.port), endpoints: { post: [{ protocol: 'http', port: 6097 }, { protocol: 'https', port: 6098 }] } }));
    t.is((await morgue(['login', mock.url, '--token', TOKEN], { configDir: dir })).code, 0);
    t.is(JSON.parse(readFileSync(path.join(dir, 'current.json'), 'utf8')).submissionEndpoint, 'https://127.0.0.1:6098/post');
    mock.handle('/api/login', (_r, res) => sendJson(res, 200, { token: TOKEN, universes: { local: {} } }));
    t.is((await morgue(['login', mock.url, '--token', TOKEN], { configDir: dir })).code, 0);
    t.false('submissionEndpoint' in JSON.parse(readFileSync(path.join(dir, 'current.json'), 'utf8')));
    writeFileSync(path.join(dir, 'r.json'), '{}');
    const put = await morgue(['put', 'myproj', 'r.json', '--format=json'], { configDir: dir });
    t.is(put.code, 1);
    t.regex(put.stderr, /^morgue: the session has no submission endpoint/);
  });
});

test('bad credentials: one line with the HTTP status, exit 1, no session saved', async (t) => {
  await withMock(async (mock, dir) => {
    mock.handle('/api/login', (_r, res) => sendJson(res, 401, { error: { message: 'invalid username or password', code: 6 } }));
    const run = await morgue(['login', mock.url], { configDir: dir, env: { MORGUE_USERNAME: 'admin', MORGUE_PASSWORD: 'wrong' } });
    t.is(run.code, 1);
    t.is(run.stderr, 'morgue: unable to authenticate: HTTP 401: Unauthorized (invalid username or password)\n');
    t.false(existsSync(path.join(dir, 'current.json')));
    mock.handle('/api/login', (_r, res) => sendJson(res, 200, { error: { message: 'invalid token', code: 5 } }));
    const token = await morgue(['login', mock.url, '--token=nope'], { configDir: dir });
    t.is(token.code, 1);
    t.is(token.stderr, 'morgue: unable to authenticate: invalid token\n');
  });
});

test('an expired session: one line saying to log in again, exit 1', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    mock.handle('/api/query', (_r, res) => sendJson(res, 200, { error: { message: 'invalid token', code: 5 } }));
    const run = await morgue(['list', 'myproj'], { configDir: dir });
    t.is(run.code, 1);
    oneLine(t, run.stderr);
    t.regex(run.stderr, /^morgue: invalid token: the session is no longer valid; run `morgue login` again/);
    mock.handle('/api/query', (_r, res) => sendJson(res, 401, { error: { message: 'session expired' } }));
    const http401 = await morgue(['describe', 'myproj'], { configDir: dir });
    t.is(http401.code, 1);
    t.regex(http401.stderr, /^morgue: HTTP 401: Unauthorized \(session expired\): the session is no longer valid/);
  });
});

test('an unreachable server: one line, exit 1, for login and for a saved session', async (t) => {
  const dir = tempDir();
  try {
    const port = await closedPort();
    const login = await morgue(['login', `http://127.0.0.1:${port}`], { configDir: dir, env: CREDS });
    t.is(login.code, 1);
    t.is(login.stderr, `morgue: cannot reach http://127.0.0.1:${port}: connection refused (is coroner running there?)\n`);
    writeFileSync(path.join(dir, 'current.json'), JSON.stringify({ config: loginAnswer(port), endpoint: `http://127.0.0.1:${port}` }));
    const list = await morgue(['list', 'myproj'], { configDir: dir });
    t.is(list.code, 1);
    oneLine(t, list.stderr);
    t.regex(list.stderr, /cannot reach/);
    const bad = await morgue(['login', 'ftp://example.com'], { configDir: dir, env: CREDS });
    t.is(bad.code, 1);
    t.is(bad.stderr, 'morgue: "ftp://example.com" is not an http or https URL\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('not logged in, and logged out', async (t) => {
  await withMock(async (mock, dir) => {
    const before = await morgue(['list', 'myproj'], { configDir: dir });
    t.is(before.code, 1);
    t.is(before.stderr, 'morgue: not logged in: run `morgue login <url>` first\n');
    await loggedIn(mock, dir);
    const out = await morgue(['logout'], { configDir: dir });
    t.is(out.code, 0, out.stderr);
    t.is(out.stdout, 'Logged out.\n');
    t.regex(mock.requests.at(-1)?.path ?? '', new RegExp(`^/api/logout\\?token=${TOKEN}$`));
    t.false(existsSync(path.join(dir, 'current.json')));
    t.is((await morgue(['list', 'myproj'], { configDir: dir })).code, 1);
    // A session the server already forgot still logs out.
    await loggedIn(mock, dir);
    mock.handle('/api/logout', (_r, res) => sendJson(res, 200, { error: { message: 'invalid token' } }));
    t.is((await morgue(['logout'], { configDir: dir })).code, 0);
    t.false(existsSync(path.join(dir, 'current.json')));
  });
});

test('no credentials and no terminal: a usage error naming the ways to log in', async (t) => {
  const dir = tempDir();
  try {
    const run = await morgue(['login', 'http://127.0.0.1:9'], { configDir: dir });
    t.is(run.code, 2);
    t.regex(run.stderr, /MORGUE_USERNAME and MORGUE_PASSWORD, or use --token/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an empty project prints only the footer', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    mock.handle('/api/query', (_r, res) =>
      sendJson(res, 200, { response: { columns: [['range(timestamp)', 'unix_timestamp'], ['bin(timestamp)', 'unix_timestamp']], values: [] }, _: { user: 'jdoe', universe: 'yourcompany', project: 'blackhole', latency: '384 us', runtime: { filter: { rows: 0 } } } }),
    );
    const run = await morgue(['list', 'blackhole'], { configDir: dir });
    t.is(run.code, 0, run.stderr);
    t.is(run.stdout, 'jdoe: yourcompany/blackhole as of 1M ago [384 us]\n');
    t.is(run.stderr, '');
    const select = await morgue(['list', 'blackhole', '--select=hostname', '--age=2d'], { configDir: dir });
    t.is(select.stdout, 'jdoe: yourcompany/blackhole as of 2d ago [384 us]\n');
    const json = await morgue(['list', 'blackhole', '--json'], { configDir: dir });
    t.is(json.stdout, '{}\n');
  });
});

test('server errors are one line with a non-zero exit', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    mock.handle('/api/query', (_r, res) => sendJson(res, 200, { error: { message: 'unknown attribute "nosuch"', code: 2 } }));
    const unknown = await morgue(['list', 'myproj', '--select=nosuch'], { configDir: dir });
    t.is(unknown.code, 1);
    t.is(unknown.stderr, 'morgue: unknown attribute "nosuch"\n');
    mock.handle('/api/query', (_r, res) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end('boom');
    });
    const crash = await morgue(['list', 'myproj'], { configDir: dir });
    t.is(crash.code, 1);
    t.is(crash.stderr, 'morgue: HTTP 500: Internal Server Error\n');
    mock.handle('/api/query', (_r, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"response": ');
    });
    const garbled = await morgue(['list', 'myproj'], { configDir: dir });
    t.is(garbled.code, 1);
    t.regex(garbled.stderr, /^morgue: the server sent invalid JSON/);
    mock.handle('/api/query', (_r, res) => sendJson(res, 200, { response: { columns: [], values: 'x' }, _: {} }));
    const malformed = await morgue(['list', 'myproj'], { configDir: dir });
    t.is(malformed.code, 1);
    t.regex(malformed.stderr, /^morgue: the server's query response is malformed/);
  });
});

test('--query prints the request without sending it (no session needed); with --raw it also sends it and prints the answer', async (t) => {
  await withMock(async (mock, dir) => {
    const only = await morgue(['list', 'myproj', '--query', '--select=hostname', '--age=1h'], { configDir: dir });
    t.is(only.code, 0, only.stderr);
    const query = JSON.parse(only.stdout) as { select: string[]; filter: Array<{ timestamp: unknown[][] }> };
    t.deepEqual(query.select, ['hostname']);
    t.is(query.filter[0]?.timestamp[0]?.[0], 'at-least');
    t.is(mock.requests.length, 0);
    await loggedIn(mock, dir);
    const both = await morgue(['list', 'myproj', '--query', '--raw'], { configDir: dir });
    t.is(both.code, 0, both.stderr);
    const [first, second] = both.stdout.trimEnd().split('\n');
    t.truthy(JSON.parse(first ?? '').fold);
    const raw = JSON.parse(second ?? '') as { _: { user: string }; response: { values: unknown[] } };
    t.is(raw._.user, 'admin');
    t.is(raw.response.values.length, 1);
  });
});

test('--csv to stdout and to a file, --json, --raw', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    const csv = await morgue(['list', 'myproj', '--select=hostname', '--csv'], { configDir: dir });
    t.is(csv.stdout, 'hostname,object,id\nweb1,1,1\nweb2,2,2\nweb2,3,3\n');
    const file = path.join(dir, 'out.csv');
    const toFile = await morgue(['list', 'myproj', '--unique=hostname', `--csv=${file}`], { configDir: dir });
    t.is(toFile.code, 0, toFile.stderr);
    t.is(readFileSync(file, 'utf8'), 'group,count,range(timestamp),unique(hostname)\n*,3,"[1795600000,1795680000]",3\n');
    t.regex(toFile.stdout, /^Wrote 1 row to .*out\.csv\.\nadmin: local\/myproj as of 1M ago \[123 us\]\n$/);
    const json = await morgue(['list', 'myproj', '--unique=hostname', '--json'], { configDir: dir });
    const unpacked = JSON.parse(json.stdout) as Record<string, Record<string, unknown>>;
    t.deepEqual(unpacked['*']?.['unique(hostname)'], [3]);
    t.is(unpacked['*']?.count, 3);
  });
});

test('no spinner when not on a terminal, even when the server is slow', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    mock.handle('/api/query', (r, res) => {
      setTimeout(() => sendJson(res, 200, { response: { columns: [], values: [] }, _: { user: 'admin', universe: 'local', project: 'myproj', latency: '1 s' } }), 800);
      void r;
    });
    const run = await morgue(['list', 'myproj'], { configDir: dir });
    t.is(run.code, 0);
    t.is(run.stderr, '');
    t.is(run.stdout, 'admin: local/myproj as of 1M ago [1 s]\n');
  });
});

test('get: Content-Disposition names the file (never a path), -o FILE, -o - for stdout, resources', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    const plain = await morgue(['get', 'myproj', '#3'], { configDir: dir });
    t.is(plain.code, 0, plain.stderr);
    t.is(readFileSync(path.join(dir, '3.json'), 'utf8'), '{"uuid":"x"}\n');
    t.is(plain.stdout, `Wrote 13 bytes to 3.json\n`);
    const out = path.join(dir, 'report.json');
    t.is((await morgue(['get', 'myproj', '0x3', '-o', out, '--resource=json.gz'], { configDir: dir })).code, 0);
    t.is(readFileSync(out, 'utf8'), '{"uuid":"x"}\n');
    t.regex(mock.requests.at(-1)?.path ?? '', /&object=3&resource=json\.gz$/);
    const stdout = await morgue(['get', 'myproj', '3', '-o', '-'], { configDir: dir });
    t.is(stdout.stdout, '{"uuid":"x"}\n');
    mock.handle('/api/get', (_r, res) => {
      res.writeHead(200, { 'Content-Disposition': 'attachment; filename="../../evil"' });
      res.end('x');
    });
    t.is((await morgue(['get', 'myproj', '4'], { configDir: dir })).code, 0);
    t.true(existsSync(path.join(dir, 'evil')));
    mock.handle('/api/get', (_r, res) => sendJson(res, 404, { error: { message: 'no such object' } }));
    const missing = await morgue(['get', 'myproj', '99'], { configDir: dir });
    t.is(missing.code, 1);
    t.is(missing.stderr, 'morgue: HTTP 404: Not Found (no such object)\n');
    const bad = await morgue(['get', 'myproj', 'xyz'], { configDir: dir });
    t.is(bad.code, 2);
  });
});

test('put: json with --kv as query parameters; bad formats and uncompressed --compression refused', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    writeFileSync(path.join(dir, 'r.json'), '{"uuid":"x"}');
    const run = await morgue(['put', 'local/myproj', 'r.json', '--format=json', '--kv=version:1.2:3', '--kv', 'tag:a'], { configDir: dir });
    t.is(run.code, 0, run.stderr);
    t.is(run.stdout, 'r.json: Success: 01000000-7e23-7a1e-0000-000000000000\n');
    t.is(mock.requests.at(-1)?.path, `/api/post?token=${TOKEN}&universe=local&project=myproj&format=json&version=1.2%3A3&tag=a`);
    t.is((await morgue(['put', 'myproj', 'r.json', '--format=elf'], { configDir: dir })).code, 2);
    t.is((await morgue(['put', 'myproj', 'r.json', '--format=json', '--compression=gzip'], { configDir: dir })).code, 2);
    const missing = await morgue(['put', 'myproj', 'nope.json', '--format=json'], { configDir: dir });
    t.is(missing.code, 1);
    t.is(missing.stderr, 'morgue: cannot read nope.json: no such file\n');
  });
});

test('set and delete: refusals of an unscoped change; --all; --json', async (t) => {
  await withMock(async (mock, dir) => {
    await loggedIn(mock, dir);
    const unscoped = await morgue(['set', 'myproj', 'state=resolved'], { configDir: dir });
    t.is(unscoped.code, 2);
    t.regex(unscoped.stderr, /add --all/);
    const all = await morgue(['set', 'myproj', 'tag=', '--all', '--json'], { configDir: dir });
    t.is(all.code, 0, all.stderr);
    t.deepEqual(JSON.parse(mock.requests.at(-1)?.body.toString() ?? '').set, { tag: null });
    t.is(JSON.parse(all.stdout).response.result, 'success');
    t.is((await morgue(['set', 'myproj', 'oops', '--all'], { configDir: dir })).code, 2);
    t.is((await morgue(['delete', 'myproj'], { configDir: dir })).code, 2);
    t.is((await morgue(['delete', 'myproj', '3', '--filter=hostname,equal,x'], { configDir: dir })).code, 2);
    const del = await morgue(['delete', 'myproj', '3', '--all', '--sync'], { configDir: dir });
    t.is(del.code, 0, del.stderr);
    t.deepEqual(JSON.parse(mock.requests.at(-1)?.body.toString() ?? ''), { universe: 'local', project: 'myproj', objects: ['3'], sync: true });
    t.is(mock.requests.at(-1)?.path, `/api/delete?token=${TOKEN}&universe=local`);
  });
});

test('usage errors exit 2; --help and --version exit 0', async (t) => {
  const dir = tempDir();
  try {
    const help = await morgue(['list', '--help'], { configDir: dir });
    t.is(help.code, 0);
    for (const flag of ['--filter', '--age', '--time', '--select', '--select-wildcard', '--head', '--tail', '--unique', '--histogram', '--distribution', '--range', '--bin', '--min', '--max', '--sum', '--mean', '--count', '--object', '--factor', '--sort', '--limit', '--offset', '--query', '--raw', '--json', '--csv']) {
      t.true(help.stdout.includes(`${flag} `) || help.stdout.includes(`${flag}\n`), flag);
    }
    t.regex((await morgue(['--version'], { configDir: dir })).stdout, /^\d+\.\d+\.\d+/);
    const unknown = await morgue(['list', 'p', '--frobnicate'], { configDir: dir });
    t.is(unknown.code, 2);
    t.is(unknown.stderr, "morgue: unknown option '--frobnicate'\n");
    t.is((await morgue(['list', 'p', '--limit=x', '--query'], { configDir: dir })).code, 2);
    t.is((await morgue(['list', 'a/b/c', '--query'], { configDir: dir })).code, 0, 'the project is only checked when the query is sent');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
