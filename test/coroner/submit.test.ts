/**
 * Submissions against a real server on 127.0.0.1: the real @backtrace/node SDK, every body form
 * of backtrace-compat.md §3, and bad bodies of every kind (each refused with the right status
 * and a message, leaving nothing stored).
 */

import { randomUUID } from 'node:crypto';
import nodeHttp from 'node:http';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import test from 'ava';
import { BacktraceBufferAttachment, BacktraceClient } from '@backtrace/node';
import { startSession } from '../../ts/server/auth.js';
import { openSqliteStore } from '../../ts/store/sqlite.js';
import { http, report, startServer, type TestServer } from './helpers.js';

let s: TestServer;
test.before(async () => {
  s = await startServer({ limits: { maxSubmissionBytes: 1024 * 1024 } });
});
test.after.always(async () => {
  await s?.close();
});

const postUrl = (extra = '') => `${s.url}/post?format=json&token=${s.token}${extra}`;
const count = () => s.store.countObjects(s.project.id);

test.serial('the real @backtrace/node SDK submits an error with an attachment; report and attachment are stored whole', async (t) => {
  const client = BacktraceClient.builder({
    url: s.url,
    token: s.token,
    captureUnhandledErrors: false,
    captureUnhandledPromiseRejections: false,
    metrics: { enable: false },
    database: { enable: false },
    userAttributes: { application: 'sdk-test', 'application.version': '1.2.3' },
  } as never).build();
  try {
    const before = await count();
    const attachment = new BacktraceBufferAttachment('notes.txt', Buffer.from('attached by the SDK'));
    const result = await client.send(new Error('boom from the SDK test'), { custom: 'x' }, [attachment]);
    t.is(result.status, 'Ok', `SDK says: ${result.message ?? ''}`);
    const rxid = (result.result as { _rxid?: string } | undefined)?._rxid;
    t.truthy(rxid, 'the SDK got a _rxid back');
    t.is(await count(), before + 1);

    const object = (await s.store.findObjectByRxid(s.project.id, rxid!))!;
    t.is(object.attributes.application, 'sdk-test');
    t.is(object.attributes.custom, 'x');
    t.is(object.attributes['error.message'], 'boom from the SDK test');
    t.deepEqual(object.classifiers, ['Error']);
    t.regex(object.fingerprint, /^[0-9a-f]{64}$/);
    t.true(object.callstack.length > 0);
    t.is(object.format, 'json');
    t.true(object.processed);

    const body = JSON.parse(Buffer.from((await s.store.getReportBody(s.project.id, object.id))!.body).toString());
    t.is(body.uuid, object.uuid);
    t.is(body.agent, '@backtrace/node');

    const attachments = await s.store.listAttachments(s.project.id, object.id);
    const notes = attachments.find((a) => a.name === 'notes.txt');
    t.truthy(notes, `attachments: ${attachments.map((a) => a.name).join(', ')}`);
    const data = await s.store.getAttachment(s.project.id, object.id, notes!.id);
    t.is(Buffer.from(data!.data).toString(), 'attached by the SDK');
  } finally {
    client.dispose();
  }
});

test.serial('plain, gzip, deflate (zlib and raw) and chunked JSON are accepted; extra query parameters become attributes', async (t) => {
  const variants: Array<[string, Buffer, Record<string, string>]> = [];
  const r1 = report();
  variants.push(['plain', Buffer.from(JSON.stringify(r1)), { 'content-type': 'application/json' }]);
  const r2 = report();
  variants.push(['gzip', zlib.gzipSync(JSON.stringify(r2)), { 'content-type': 'application/json', 'content-encoding': 'gzip' }]);
  const r3 = report();
  variants.push(['deflate', zlib.deflateSync(JSON.stringify(r3)), { 'content-type': 'application/octet-stream', 'content-encoding': 'deflate' }]);
  const r4 = report();
  variants.push(['raw deflate', zlib.deflateRawSync(JSON.stringify(r4)), { 'content-encoding': 'deflate' }]);
  for (const [name, body, headers] of variants) {
    const res = await http(postUrl('&build=42&channel=beta'), { body, headers });
    t.is(res.status, 200, `${name}: ${res.text}`);
    t.is(res.headers['content-type'], 'application/json', 'exactly application/json, no charset');
    t.is(res.json.response, 'ok');
    const object = (await s.store.findObjectByRxid(s.project.id, res.json._rxid))!;
    t.is(object.attributes.build, '42', name);
    t.is(object.attributes.channel, 'beta', name);
    t.false('token' in object.attributes, 'the token is not an attribute');
  }
  // Chunked: a streamed body without Content-Length.
  const r5 = report();
  const { request } = await import('undici');
  const res = await request(postUrl(), {
    method: 'POST',
    body: Readable.from(
      (async function* () {
        const text = JSON.stringify(r5);
        yield Buffer.from(text.slice(0, 10));
        yield Buffer.from(text.slice(10));
      })(),
    ),
  });
  t.is(res.statusCode, 200);
  t.is(((await res.body.json()) as { response: string }).response, 'ok');
});

test.serial('a uuid already stored answers 200 with the existing _rxid and stores nothing new', async (t) => {
  const r = report({ uuid: randomUUID() });
  const first = await http(postUrl(), { body: JSON.stringify(r) });
  const before = await count();
  const again = await http(postUrl(), { body: JSON.stringify(r) });
  t.is(again.status, 200);
  t.is(again.json._rxid, first.json._rxid);
  t.is(await count(), before);
  // Sync posts say so.
  const sync = await http(postUrl('&_mod_sync=1'), { body: JSON.stringify(r) });
  t.is(sync.json.unique, false);
  t.is(sync.json._rxid, first.json._rxid);
});

test.serial('multipart: upload_file, attachment_<name> parts and form fields as attributes', async (t) => {
  const r = report();
  const form = new FormData();
  form.append('upload_file', new Blob([JSON.stringify(r)], { type: 'application/json' }), 'upload_file.json');
  form.append('attachment_log.txt', new Blob(['line 1\nline 2\n']), 'log.txt');
  form.append('attachment_bt-breadcrumbs-0', new Blob(['[]'], { type: 'application/json' }), 'bt-breadcrumbs-0');
  form.append('version', '9.9');
  const res = await fetch(postUrl(), { method: 'POST', body: form });
  const json = (await res.json()) as { _rxid: string };
  t.is(res.status, 200);
  const object = (await s.store.findObjectByRxid(s.project.id, json._rxid))!;
  t.is(object.uuid, r.uuid as string);
  t.is(object.attributes.version, '9.9');
  const names = (await s.store.listAttachments(s.project.id, object.id)).map((a) => a.name).sort();
  t.deepEqual(names, ['bt-breadcrumbs-0', 'log.txt']);
});

test.serial('minidumps, raw and multipart, are stored with their attachments and marked not processed', async (t) => {
  const dump = Buffer.concat([Buffer.from('MDMP'), Buffer.from([0x93, 0xa7, 0, 0]), Buffer.from(randomUUID())]);
  const raw = await http(`${s.url}/post?format=minidump&token=${s.token}&version=1.0`, { body: dump, headers: { 'content-type': 'application/octet-stream' } });
  t.is(raw.status, 200, raw.text);
  const o1 = (await s.store.findObjectByRxid(s.project.id, raw.json._rxid))!;
  t.false(o1.processed);
  t.is(o1.format, 'minidump');
  t.is(o1.attributes.version, '1.0');
  t.deepEqual(Buffer.from((await s.store.getReportBody(s.project.id, o1.id))!.body), dump);
  // The same dump again is the same crash (a retrying client).
  const again = await http(`${s.url}/post?format=minidump&token=${s.token}`, { body: dump });
  t.is(again.json._rxid, raw.json._rxid);

  const dump2 = Buffer.concat([Buffer.from('MDMP'), Buffer.from(randomUUID())]);
  const form = new FormData();
  form.append('upload_file_minidump', new Blob([dump2]), 'crash.dmp');
  form.append('attachment_config.ini', new Blob(['a=1']), 'config.ini');
  form.append('release', 'r7');
  const res = await fetch(`${s.url}/post?token=${s.token}`, { method: 'POST', body: form });
  const json = (await res.json()) as { _rxid: string };
  t.is(res.status, 200);
  const o2 = (await s.store.findObjectByRxid(s.project.id, json._rxid))!;
  t.false(o2.processed);
  t.is(o2.attributes.release, 'r7');
  t.deepEqual((await s.store.listAttachments(s.project.id, o2.id)).map((a) => a.name), ['config.ini']);
});

test.serial('an attachment posted later joins the stored crash (object=<_rxid>&attachment_name=)', async (t) => {
  const first = await http(postUrl(), { body: JSON.stringify(report()) });
  const res = await http(postUrl(`&object=${first.json._rxid}&attachment_name=${encodeURIComponent('../../etc/later.log')}`), {
    body: 'late bytes',
    headers: { 'content-type': 'text/plain' },
  });
  t.is(res.status, 200, res.text);
  t.is(res.json._rxid, first.json._rxid);
  t.is(res.json.attachment_name, 'later.log', 'no directories from the client');
  const object = (await s.store.findObjectByRxid(s.project.id, first.json._rxid))!;
  t.is(res.json.object, object.id.toString(16));
  const got = await s.store.getAttachment(s.project.id, object.id, Number(res.json.attachment_id));
  t.is(Buffer.from(got!.data).toString(), 'late bytes');
  const missing = await http(postUrl(`&object=${randomUUID()}&attachment_name=x`), { body: 'x' });
  t.is(missing.status, 404);
});

test.serial('the path form /<universe>/<token>/json and /api/post with a session or a submission token', async (t) => {
  const path = await http(`${s.url}/local/${s.token}/json`, { body: JSON.stringify(report()) });
  t.is(path.status, 200, path.text);
  const wrongUniverse = await http(`${s.url}/elsewhere/${s.token}/json`, { body: JSON.stringify(report()) });
  t.is(wrongUniverse.status, 403);

  const session = await http(`${s.url}/api/post?token=${s.adminSession}&universe=local&project=blackhole&format=json`, {
    body: JSON.stringify(report()),
    headers: { 'content-type': 'application/octet-stream' },
  });
  t.is(session.status, 200, session.text);
  const viaToken = await http(`${s.url}/api/post?format=json&token=${s.token}`, { body: JSON.stringify(report()) });
  t.is(viaToken.status, 200, viaToken.text);
  const noProject = await http(`${s.url}/api/post?token=${s.adminSession}&format=json`, { body: JSON.stringify(report()) });
  t.is(noProject.status, 400);
});

test.serial('bad bodies of every kind are refused with a status and a message, and store nothing', async (t) => {
  const before = await count();
  const cases: Array<[string, string, Buffer | string, Record<string, string>, number, RegExp]> = [
    ['not JSON', postUrl(), '{"uuid": ', {}, 400, /not valid JSON/],
    ['JSON array', postUrl(), '[1,2,3]', {}, 400, /must be a JSON object/],
    ['JSON string', postUrl(), '"hello"', {}, 400, /must be a JSON object/],
    ['empty body', postUrl(), '', {}, 400, /no report/],
    ['attributes not an object', postUrl(), JSON.stringify(report({ attributes: [1] })), {}, 400, /attributes/],
    ['uuid not a string', postUrl(), JSON.stringify(report({ uuid: { a: 1 } })), {}, 400, /uuid/],
    ['uuid with a path in it', postUrl(), JSON.stringify(report({ uuid: '../../x' })), {}, 400, /uuid/],
    ['bad gzip', postUrl(), Buffer.from('this is not gzip'), { 'content-encoding': 'gzip' }, 400, /gzip/],
    ['truncated gzip', postUrl(), zlib.gzipSync(JSON.stringify(report())).subarray(0, 20), { 'content-encoding': 'gzip' }, 400, /gzip/],
    ['unknown encoding', postUrl(), JSON.stringify(report()), { 'content-encoding': 'br' }, 400, /not supported/],
    ['multipart without boundary', postUrl(), 'x', { 'content-type': 'multipart/form-data' }, 400, /multipart/],
    ['multipart cut short', postUrl(), '--b\r\nContent-Disposition: form-data; name="upload_file"; filename="a"\r\n\r\n{"a"', { 'content-type': 'multipart/form-data; boundary=b' }, 400, /multipart|no report/],
    ['multipart without upload_file', postUrl(), '--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n', { 'content-type': 'multipart/form-data; boundary=b' }, 400, /no report/],
    ['minidump without MDMP', `${s.url}/post?format=minidump&token=${s.token}`, 'not a dump', {}, 400, /MDMP/],
    ['unsupported format', `${s.url}/post?format=plcrash&token=${s.token}`, 'x', {}, 400, /not supported/],
    ['deeply nested JSON', postUrl(), '['.repeat(200_000) + ']'.repeat(200_000), {}, 400, /JSON/],
    ['binary garbage', postUrl(), Buffer.from([0, 1, 2, 255, 254, 10, 13]), {}, 400, /JSON/],
  ];
  for (const [name, url, body, headers, status, message] of cases) {
    const res = await http(url, { body, headers });
    t.is(res.status, status, `${name}: ${res.text}`);
    t.is(res.headers['content-type'], 'application/json', name);
    t.regex(String(res.json?.error?.message), message, name);
    t.is(typeof res.json?.error?.code, 'number', name);
  }
  t.is(await count(), before, 'nothing was stored');
});

test.serial('a bad report sent together with good ones is refused alone: they share a batch, not a fate', async (t) => {
  const before = await count();
  const good = Array.from({ length: 20 }, () => report());
  const answers = await Promise.all([
    ...good.map((r) => http(postUrl(), { body: JSON.stringify(r) })),
    http(postUrl(), { body: '{"uuid": "half' }),
    http(postUrl(), { body: JSON.stringify(report({ uuid: 42 })) }),
  ]);
  t.deepEqual(answers.map((a) => a.status), [...good.map(() => 200), 400, 400]);
  t.regex(answers[20]!.json.error.message, /not valid JSON/);
  t.regex(answers[21]!.json.error.message, /uuid/);
  t.is(await count(), before + good.length);
});

test.serial('a token revoked by another process (the admin CLI) is refused within a second or so', async (t) => {
  const token = await s.store.createToken({ id: 'cd'.repeat(32), projectId: s.project.id, name: 'elsewhere', ownerUid: 1, capabilities: [] });
  const url = `${s.url}/post?format=json&token=${token.id}`;
  t.is((await http(url, { body: JSON.stringify(report()) })).status, 200);
  // Another process: its own connection to the same data folder, as `coroner token delete` has.
  const other = await openSqliteStore({ dataDir: s.dataDir, workers: false });
  try {
    await other.revokeToken(token.id);
  } finally {
    await other.close();
  }
  await new Promise((r) => setTimeout(r, 1200));
  t.is((await http(url, { body: JSON.stringify(report()) })).status, 403);
});

test.serial('a missing token is 401, a wrong or revoked one 403; oversized bodies are 413, compressed or not', async (t) => {
  const body = JSON.stringify(report());
  t.is((await http(`${s.url}/post?format=json`, { body })).status, 401);
  t.is((await http(`${s.url}/post?format=json&token=${'0'.repeat(64)}`, { body })).status, 403);
  t.is((await http(`${s.url}/post?format=json&token=../../etc/passwd`, { body })).status, 403);
  const token = await s.store.createToken({ id: 'ab'.repeat(32), projectId: s.project.id, name: 'temp', ownerUid: 1, capabilities: [] });
  t.is((await http(`${s.url}/post?format=json&token=${token.id}`, { body: JSON.stringify(report()) })).status, 200);
  await s.store.revokeToken(token.id);
  t.is((await http(`${s.url}/post?format=json&token=${token.id}`, { body: JSON.stringify(report()) })).status, 403);

  const big = JSON.stringify(report({ annotations: { pad: 'x'.repeat(2 * 1024 * 1024) } }));
  const tooBig = await http(postUrl(), { body: big });
  t.is(tooBig.status, 413);
  t.regex(tooBig.json.error.message, /limit/);
  // A small gzip that inflates past the limit (a decompression bomb).
  const bomb = zlib.gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20));
  t.true(bomb.length < 1024 * 1024);
  const bombed = await http(postUrl(), { body: bomb, headers: { 'content-encoding': 'gzip' } });
  t.is(bombed.status, 413);
  t.regex(bombed.json.error.message, /decompressed/);
});

test.serial('429 when a project is over its submission rate; other endpoints answer JSON errors', async (t) => {
  const limited = await startServer({ limits: { submissionsPerMinutePerProject: 3 } });
  try {
    const statuses: number[] = [];
    let retryAfter: unknown;
    for (let i = 0; i < 5; i++) {
      const res = await http(`${limited.url}/post?format=json&token=${limited.token}`, { body: JSON.stringify(report()) });
      statuses.push(res.status);
      if (res.status === 429) retryAfter = res.headers['retry-after'];
    }
    t.deepEqual(statuses, [200, 200, 200, 429, 429]);
    t.regex(String(retryAfter), /^\d+$/);
    t.is(await limited.store.countObjects(limited.project.id), 3);
  } finally {
    await limited.close();
  }
  const missing = await http(`${s.url}/no/such/endpoint/here`);
  t.is(missing.status, 404);
  t.is(missing.headers['content-type'], 'application/json');
  const wrongMethod = await http(`${s.url}/post`);
  t.is(wrongMethod.status, 405);
});

test.serial('sessions expire; a session confers nothing outside its universe', async (t) => {
  const universe = (await s.store.getUniverse('local'))!;
  const admin = (await s.store.getUser(universe.id, 'admin'))!;
  const expired = await startSession(s.store, admin, -1);
  const res = await http(`${s.url}/api/admin/projects?token=${expired.token}`);
  t.is(res.status, 401);
  const live = await http(`${s.url}/api/admin/projects`, { headers: { 'X-Coroner-Token': s.adminSession } });
  t.is(live.status, 200);
  t.true(live.json.projects.some((p: { name: string }) => p.name === 'blackhole'));
  const otherUniverse = await http(`${s.url}/api/post?token=${s.adminSession}&universe=other&project=blackhole`, { body: JSON.stringify(report()) });
  t.is(otherUniverse.status, 403);
});

test('bodies held in memory at once are bounded: past the budget a request is answered 429 with Retry-After, and is taken once memory frees', async (t) => {
  const s = await startServer({ limits: { maxBufferedBodyBytes: 1_000_000, maxSubmissionBytes: 1_000_000, maxApiBodyBytes: 1_000_000 } });
  t.teardown(() => s.close());
  const url = new URL(`${s.url}/post?format=json&token=${s.token}`);
  // A report of exactly 900,000 bytes, sent slowly: 800,000 now, the rest later.
  const head = JSON.stringify(report({ uuid: randomUUID() })).slice(0, -1);
  const slowBody = Buffer.from(`${head},"padding":"${'p'.repeat(900_000 - head.length - 14)}"}`);
  t.is(slowBody.length, 900_000);
  const slow = nodeHttp.request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(slowBody.length) } });
  const slowAnswer = new Promise<{ status: number; text: string }>((resolve, reject) => {
    slow.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    slow.on('error', reject);
  });
  slow.write(slowBody.subarray(0, 800_000));
  await new Promise((r) => setTimeout(r, 500));

  const second = JSON.stringify(report({ uuid: randomUUID(), attributes: { padding: 'q'.repeat(300_000) } }));
  const refused = await http(url.toString(), { body: second, headers: { 'content-type': 'application/json' } });
  t.is(refused.status, 429, refused.text);
  t.is(refused.json.error.message, 'The server is busy receiving other large uploads; retry shortly.');
  t.is(refused.headers['retry-after'], '5');

  slow.end(slowBody.subarray(800_000));
  const done = await slowAnswer;
  t.is(done.status, 200, done.text);
  // The slow one's answer gave its memory back: the same report is taken now.
  const retried = await http(url.toString(), { body: second, headers: { 'content-type': 'application/json' } });
  t.is(retried.status, 200, retried.text);
});

test('a client that leaves while its gzip body is being inflated gives its share of the memory budget back', async (t) => {
  const limit = 64 * 1024 * 1024;
  const s = await startServer({ limits: { maxSubmissionBytes: limit, maxBufferedBodyBytes: limit + 8 * 1024 * 1024 } });
  t.teardown(() => s.close());
  // ~60 MiB of report once inflated, ~60 KiB on the wire.
  const head = JSON.stringify(report({ uuid: randomUUID() })).slice(0, -1);
  const inflated = Buffer.from(`${head},"padding":"${'p'.repeat(60 * 1024 * 1024)}"}`);
  const gz = zlib.gzipSync(inflated);
  const url = new URL(`${s.url}/post?format=json&token=${s.token}`);
  for (let i = 0; i < 3; i++) {
    // Sent whole, then the connection dropped while the server inflates it.
    await new Promise<void>((resolve) => {
      const req = nodeHttp.request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(gz.length) } });
      req.on('error', () => resolve());
      req.end(gz, () => setTimeout(() => {
        req.destroy();
        resolve();
      }, 5));
    });
  }
  await new Promise((r) => setTimeout(r, 1500));
  // Had those kept their bytes, the budget (72 MiB) could not take another 60 MiB body.
  const res = await http(url.toString(), { body: zlib.gzipSync(Buffer.from(`${JSON.stringify(report({ uuid: randomUUID() })).slice(0, -1)},"padding":"${'q'.repeat(60 * 1024 * 1024)}"}`)), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
  t.is(res.status, 200, res.text.slice(0, 300));
});
