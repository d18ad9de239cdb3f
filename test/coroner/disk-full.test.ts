/**
 * A full disk under the data folder (a small tmpfs mounted for the test; needs root, as the
 * core-dump tests do): submissions are refused with 507 and a sentence, the log says so once,
 * nothing acknowledged is lost, and ingestion resumes by itself once there is room.
 */

import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { openSqliteStore } from '../../ts/store/sqlite.js';
import { http, startServer, type HttpResult } from './helpers.js';

/** A ~4 KB report (one of seven stacks). */
const reportBody = (i: number) =>
  JSON.stringify({
    uuid: randomUUID(),
    timestamp: 1_700_000_000 + i,
    threads: { main: { name: 'main', fault: true, stack: [{ funcName: `fails_${i % 7}` }, { funcName: 'main' }] } },
    attributes: { hostname: 'full-disk-host', padding: 'x'.repeat(4000) },
  });

test.serial('a full disk: 507 with a sentence and Retry-After, one log line, /api/health 503, nothing acknowledged lost, ingestion resumes when there is room', async (t) => {
  const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'coroner-full-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint], { stdio: 'pipe' });
  } catch (err) {
    fs.rmSync(mountPoint, { recursive: true, force: true });
    t.fail(`this test mounts a small tmpfs and needs root: ${(err as Error).message}`);
    return;
  }
  t.teardown(() => {
    execFileSync('umount', ['-l', mountPoint]);
    fs.rmSync(mountPoint, { recursive: true, force: true });
  });
  const dataDir = path.join(mountPoint, 'data');
  const lines: string[] = [];
  const s = await startServer({ dataDir, workflows: false, log: (line) => lines.push(line) });
  let open = true;
  t.teardown(async () => {
    if (open) await s.close();
  });
  const submit = (i: number) => http(`${s.url}/post?format=json&token=${s.token}`, { body: reportBody(i), headers: { 'content-type': 'application/json' } });

  const health = () => http(`${s.url}/api/health`);
  const healthy = await health();
  t.is(healthy.status, 200, healthy.text);
  t.is(healthy.json.status, 'ok');
  t.regex(healthy.json.version, /^\d+\.\d+\.\d+/);

  const acknowledged: string[] = [];
  const refused: HttpResult[] = [];
  let i = 0;
  for (; i < 5000 && refused.length < 20; i++) {
    const r = await submit(i);
    if (r.status === 200) acknowledged.push(r.json._rxid as string);
    else refused.push(r);
  }
  t.true(acknowledged.length > 10, `${acknowledged.length} reports fit before the disk filled`);
  t.is(refused.length, 20, 'the disk filled up');
  for (const r of refused) {
    t.is(r.status, 507, r.text);
    t.is(r.json.error.message, "The server's disk is full, so nothing was stored. Try again later.");
    t.is(r.headers['retry-after'], '60');
  }
  t.deepEqual(lines.filter((l) => /disk is full/.test(l)).length, 1, 'said once, not once per refusal');
  t.false(lines.some((l) => l.startsWith('request ')), `no request failed as a server error:\n${lines.join('\n')}`);
  // Reads go on while the disk is full.
  const counted = await http(`${s.url}/api/query?universe=local&project=blackhole`, {
    body: JSON.stringify({ fold: { fingerprint: [['unique']] } }),
    headers: { 'content-type': 'application/json', 'x-coroner-token': s.adminSession },
  });
  t.is(counted.status, 200, counted.text);
  t.is(counted.json.response.values[0][2], acknowledged.length, 'the query counts every acknowledged report');
  t.is(await s.store.countObjects(s.project.id), acknowledged.length);
  // Monitors hear of it.
  const full = await health();
  t.is(full.status, 503);
  t.is(full.json.status, 'disk_full');

  // Room again: the same server takes reports again without being told.
  execFileSync('mount', ['-o', 'remount,size=64m', mountPoint]);
  for (let k = 0; k < 5; k++, i++) {
    const r = await submit(i);
    t.is(r.status, 200, r.text);
    acknowledged.push(r.json._rxid as string);
  }
  t.is((await health()).json.status, 'ok', 'a write that went through clears it');

  // A restart keeps every acknowledged report.
  await s.close();
  open = false;
  const store = await openSqliteStore({ dataDir });
  try {
    t.is(await store.countObjects(s.project.id), acknowledged.length);
    for (const rxid of acknowledged) t.truthy(await store.findObjectByRxid(s.project.id, rxid), `report ${rxid} is stored`);
  } finally {
    await store.close();
  }
});

test.serial('a big report refused for a full disk leaves no half-written blob file; one a crash left is removed when the store opens', async (t) => {
  const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'coroner-full-blob-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountPoint], { stdio: 'pipe' });
  t.teardown(() => {
    execFileSync('umount', ['-l', mountPoint]);
    fs.rmSync(mountPoint, { recursive: true, force: true });
  });
  const dataDir = path.join(mountPoint, 'data');
  const s = await startServer({ dataDir, workflows: false });
  let open = true;
  t.teardown(async () => {
    if (open) await s.close();
  });
  const partials = () =>
    fs.existsSync(path.join(dataDir, 'blobs'))
      ? fs.readdirSync(path.join(dataDir, 'blobs')).flatMap((d) => fs.readdirSync(path.join(dataDir, 'blobs', d)).filter((f) => f.endsWith('.tmp')))
      : [];
  // Over the inline limit, so it goes to a file, and bigger than what is left of the disk.
  const big = JSON.stringify({ uuid: randomUUID(), threads: { main: { fault: true, stack: [{ funcName: 'big' }] } }, attributes: { blob: 'z'.repeat(2_500_000) } });
  const r = await http(`${s.url}/post?format=json&token=${s.token}`, { body: big, headers: { 'content-type': 'application/json' } });
  t.is(r.status, 507, r.text);
  t.deepEqual(partials(), []);

  // A partial file as a crash mid-write leaves it: gone at the next start.
  await s.close();
  open = false;
  fs.mkdirSync(path.join(dataDir, 'blobs', 'ab'), { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'blobs', 'ab', '.0123456789abcdef0123456789abcdef.tmp'), 'half');
  const store = await openSqliteStore({ dataDir });
  await store.close();
  t.deepEqual(partials(), []);
});
