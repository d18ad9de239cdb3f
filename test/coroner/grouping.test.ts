/**
 * Grouping on real snapshots: corpus cores run through bin/ptrace, plus cores this test makes by
 * compiling the corpus's crash.c and crashing it twice (two address-space layouts), submitted to
 * a real server. Also the explain call (HTTP and function), versioned rules, SDK fingerprints.
 */

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { LOCK_FILE } from '../daemon/helpers/core-pattern.js';
import { CompiledGroupingRules, callstackOf, explainFingerprint, groupReport } from '../../ts/grouping/fingerprint.js';
import { DEFAULT_GROUPING_RULES, parseGroupingRules } from '../../ts/grouping/rules.js';
import { corpusDir } from '../helpers/corpus.js';
import { corpusSnapshot, execFileP, http, report, snapshot, startServer, tempDir, type TestServer } from './helpers.js';

let s: TestServer;
let out: string;
test.before(async () => {
  s = await startServer();
  out = tempDir('coroner-grouping-');
});
test.after.always(async () => {
  await s?.close();
});

async function submitFile(file: string): Promise<{ rxid: string; fingerprint: string; id: number }> {
  const res = await http(`${s.url}/post?format=json&token=${s.token}`, { body: fs.readFileSync(file) });
  if (res.status !== 200) throw new Error(`submission of ${file} failed: ${res.status} ${res.text}`);
  const object = (await s.store.findObjectByRxid(s.project.id, res.json._rxid))!;
  return { rxid: res.json._rxid, fingerprint: object.fingerprint, id: object.id };
}

/** Compiles crash.c and crashes it in `dir`; returns the core and the executable. */
async function crashOnce(dir: string, exe: string): Promise<{ core: string; exe: string }> {
  fs.mkdirSync(dir, { recursive: true });
  // A shared hold of the core_pattern lock the daemon tests take: no test points core_pattern
  // elsewhere while this core is being made.
  const r = await execFileP('flock', ['-s', '-w', '600', LOCK_FILE, '/bin/sh', '-c', `ulimit -c unlimited; exec "${exe}"`], { cwd: dir });
  const core = fs.readdirSync(dir).find((f) => f === 'core' || f.startsWith('core.'));
  if (!core) throw new Error(`the crash program left no core in ${dir} (exit ${r.code}; core_pattern must be "core"): ${r.stderr}`);
  return { core: path.join(dir, core), exe };
}

test.serial('c-segv-O0 and c-segv-O2 share a fingerprint; c-segv and c-abort do not; explain lists the frames used', async (t) => {
  const o0 = await submitFile(await corpusSnapshot('c-segv-O0', out));
  const o2 = await submitFile(await corpusSnapshot('c-segv-O2', out));
  const abort = await submitFile(await corpusSnapshot('c-abort', out));
  t.regex(o0.fingerprint, /^[0-9a-f]{64}$/);
  t.is(o0.fingerprint, o2.fingerprint, '-O0 and -O2 builds of one program group together');
  t.not(o0.fingerprint, abort.fingerprint, 'a SIGSEGV and an abort are different crashes');

  const explained = await http(`${s.url}/api/fingerprint/explain?token=${s.adminSession}&project=blackhole&object=${o2.id.toString(16)}`);
  t.is(explained.status, 200, explained.text);
  t.is(explained.json.fingerprint, o2.fingerprint);
  t.is(explained.json.stored_fingerprint, o2.fingerprint);
  t.is(explained.json.kind, 'SIGSEGV');
  const used = explained.json.frames.filter((f: { used: boolean }) => f.used).map((f: { name: string }) => f.name);
  t.deepEqual(used, ['level3', 'level2', 'level1', 'main']);
  const skipped = explained.json.frames.filter((f: { used: boolean }) => !f.used);
  t.true(skipped.some((f: { name: string; reason: string }) => f.name === '_start' && /entry/.test(f.reason)));

  const abortExplained = await http(`${s.url}/api/fingerprint/explain?token=${s.adminSession}&project=blackhole&object=${abort.rxid}`);
  const abortFrames = abortExplained.json.frames as Array<{ name: string; used: boolean; reason: string }>;
  for (const name of ['raise', 'abort']) {
    const f = abortFrames.find((x) => x.name === name);
    t.truthy(f, `${name} is on the abort stack`);
    t.false(f!.used);
    t.regex(f!.reason, /abort path/);
  }
  t.deepEqual(abortFrames.filter((f) => f.used).map((f) => f.name), ['level3', 'level2', 'level1', 'main']);
  t.is(abortExplained.json.kind, 'SIGABRT');

  // The function gives the same answer as the endpoint.
  const fn = explainFingerprint(JSON.parse(fs.readFileSync(path.join(out, 'c-segv-O0.json'), 'utf8')));
  t.is(fn.fingerprint, o0.fingerprint);
});

test.serial('two runs under different address-space layouts, on two hostnames, share one fingerprint', async (t) => {
  const src = path.join(corpusDir(), 'src', 'crash.c');
  if (!fs.existsSync(src)) throw new Error(`${src} is missing: build the corpus (scripts/corpus.sh) or set CORESNAP_CORPUS_DIR`);
  const exe = path.join(out, 'crash-exe');
  const cc = await execFileP('gcc', ['-O1', '-g', '-pthread', '-o', exe, src]);
  t.is(cc.code, 0, cc.stderr);
  const a = await crashOnce(path.join(out, 'run-a'), exe);
  const b = await crashOnce(path.join(out, 'run-b'), exe);
  const snapA = await snapshot(a.core, a.exe, out, 'aslr-a', ['--kv', 'hostname:alpha']);
  const snapB = await snapshot(b.core, b.exe, out, 'aslr-b', ['--kv', 'hostname:beta']);
  const ra = JSON.parse(fs.readFileSync(snapA, 'utf8'));
  const rb = JSON.parse(fs.readFileSync(snapB, 'utf8'));
  const top = (r: any) => r.threads[r.mainThread].stack[0];
  t.is(top(ra).funcName, 'level3');
  t.not(top(ra).address, top(rb).address, 'the two runs were loaded at different addresses (ASLR)');
  t.is(top(ra).libraryOffset, top(rb).libraryOffset);

  const ia = await submitFile(snapA);
  const ib = await submitFile(snapB);
  const oa = (await s.store.getObject(s.project.id, ia.id))!;
  const ob = (await s.store.getObject(s.project.id, ib.id))!;
  t.is(oa.attributes.hostname, 'alpha');
  t.is(ob.attributes.hostname, 'beta');
  t.is(ia.fingerprint, ib.fingerprint);
});

test.serial('grouping rules are versioned data: a new version changes new fingerprints only; bad rules are refused', async (t) => {
  const snap = path.join(out, 'c-segv-O0.json');
  const before = await submitFile(await corpusSnapshot('c-segv-O0', out));
  const get = await http(`${s.url}/api/admin/grouping?token=${s.adminSession}&project=blackhole`);
  t.is(get.status, 200);
  t.is(get.json.version, 0);
  t.false(get.json.custom);
  t.is(get.json.rules.frames, 5);

  const put = await http(`${s.url}/api/admin/grouping?token=${s.adminSession}&project=blackhole`, { method: 'PUT', body: JSON.stringify({ frames: 1 }) });
  t.is(put.status, 200, put.text);
  t.is(put.json.version, 1);
  const bad = await http(`${s.url}/api/admin/grouping?token=${s.adminSession}&project=blackhole`, {
    method: 'PUT',
    body: JSON.stringify({ skip: [{ function: '(', reason: 'broken' }] }),
  });
  t.is(bad.status, 400);
  t.regex(bad.json.error.message, /regular expression/);

  // The same crash again (new uuid) is now grouped by its top frame only.
  const r = JSON.parse(fs.readFileSync(snap, 'utf8'));
  r.uuid = crypto.randomUUID();
  const res = await http(`${s.url}/post?format=json&token=${s.token}`, { body: JSON.stringify(r) });
  const after = (await s.store.findObjectByRxid(s.project.id, res.json._rxid))!;
  t.not(after.fingerprint, before.fingerprint);
  t.is((await s.store.getObject(s.project.id, before.id))!.fingerprint, before.fingerprint, 'stored crashes keep theirs');
  const explained = await http(`${s.url}/api/fingerprint/explain?token=${s.adminSession}&project=blackhole&object=${res.json._rxid}`);
  t.is(explained.json.rulesVersion, 1);
  t.deepEqual(explained.json.frames.filter((f: { used: boolean }) => f.used).map((f: { name: string }) => f.name), ['level3']);

  // Explain a report that is not stored (POST), then restore the defaults as version 2.
  const posted = await http(`${s.url}/api/fingerprint/explain?token=${s.adminSession}&project=blackhole`, { body: JSON.stringify(r) });
  t.is(posted.json.fingerprint, after.fingerprint);
  const reset = await http(`${s.url}/api/admin/grouping?token=${s.adminSession}&project=blackhole`, { method: 'PUT', body: '{}' });
  t.is(reset.json.version, 2);
  const nonAdmin = await http(`${s.url}/api/admin/grouping?project=blackhole`, { method: 'PUT', body: '{}' });
  t.is(nonAdmin.status, 401);
});

test.serial("an SDK's own fingerprint is respected", async (t) => {
  const hex = 'ab'.repeat(32);
  const own = await http(`${s.url}/post?format=json&token=${s.token}`, { body: JSON.stringify(report({ fingerprint: hex })) });
  t.is((await s.store.findObjectByRxid(s.project.id, own.json._rxid))!.fingerprint, hex);
  const other = await http(`${s.url}/post?format=json&token=${s.token}`, { body: JSON.stringify(report({ fingerprint: 'my-group' })) });
  t.is((await s.store.findObjectByRxid(s.project.id, other.json._rxid))!.fingerprint, createHash('sha256').update('my-group').digest('hex'));
  t.is(explainFingerprint(report({ fingerprint: hex })).source, 'sdk');
});

test('normalisation: names lose parameters, offsets and clone suffixes; unnamed frames use module+offset', (t) => {
  const stack = (frames: unknown[]) => ({ threads: { '1': { fault: true, stack: frames } }, mainThread: '1', attributes: { signal: 'SIGSEGV' } });
  const a = explainFingerprint(stack([{ funcName: 'parse(char const*, int) const' }, { funcName: 'worker.cold' }, { funcName: 'run+0x1a' }]));
  t.deepEqual(a.frames.map((f) => f.name), ['parse', 'worker', 'run']);
  const b = explainFingerprint(stack([{ address: '0x7f00001234', library: '/usr/lib/libfoo.so.1', libraryOffset: '0x1234' }, { address: '0x55aa' }]));
  t.is(b.frames[0]!.name, 'libfoo.so.1+0x1234');
  t.true(b.frames[0]!.used);
  t.false(b.frames[1]!.used);
  t.regex(b.frames[1]!.reason, /ASLR/);
  const c = explainFingerprint(stack([{ funcName: '(anonymous namespace)::Widget::draw(int)' }, { funcName: 'operator()' }]));
  t.deepEqual(c.frames.map((f) => f.name), ['(anonymous namespace)::Widget::draw', 'operator()']);
});

test.serial('ingestion\'s one-pass grouping (remembered per stack) gives what explain and callstack give, on every snapshot and SDK shape', async (t) => {
  const reports: Array<Record<string, unknown>> = [];
  for (const c of ['c-segv-O0', 'c-segv-O2', 'c-abort']) {
    const file = path.join(out, `${c}.json`);
    if (!fs.existsSync(file)) await corpusSnapshot(c, out);
    reports.push(JSON.parse(fs.readFileSync(file, 'utf8')));
  }
  reports.push(report(), report({ fingerprint: 'my own' }), report({ classifiers: ['TypeError'] }));
  reports.push(report({ threads: { main: { fault: true, stack: [{ funcName: 'abort' }, { funcName: 'f(int) const+0x10' }, { library: '/lib/libx.so', libraryOffset: 4096 }, { address: '0x1234' }] } } }));
  // Two stacks whose fields run together the same way: they must not share a remembered verdict.
  reports.push(report({ threads: { main: { fault: true, stack: [{ funcName: 'a', library: 'bc' }] } } }));
  reports.push(report({ threads: { main: { fault: true, stack: [{ funcName: 'ab', library: 'c' }] } } }));
  const fewerFrames = new CompiledGroupingRules(parseGroupingRules({ ...DEFAULT_GROUPING_RULES, frames: 2, inlined: 'skip' }), 7);
  for (const rules of [new CompiledGroupingRules(), fewerFrames]) {
    for (let round = 0; round < 2; round++) {
      for (const r of reports) {
        const fast = groupReport(r, rules);
        t.is(fast.fingerprint, explainFingerprint(r, rules).fingerprint, `fingerprint of ${String(r.uuid)} (round ${round})`);
        t.deepEqual(fast.callstack, callstackOf(r, rules));
      }
    }
  }
  t.not(groupReport(reports.at(-1)!).fingerprint, groupReport(reports.at(-2)!).fingerprint);
});
