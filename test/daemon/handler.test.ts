/**
 * coresnap-handler run as the kernel runs it (a real core on stdin, the pid of a live process of
 * the same program), without touching core_pattern: spool files and their modes, metadata, the
 * core size limit, the rate limit and its counters, dump.quota on a small tmpfs, an archive it must
 * refuse, and the passthrough for executables outside only_under.
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import test from 'ava';

import { parseCoresnapConf } from '../../ts/config/coresnap-conf.js';
import { ArchiveLayout, prepareArchive } from '../../ts/daemon/archive.js';
import { ensureUser, handlerConfText } from '../../ts/daemon/install.js';
import { compileCrash, makeCore, readCounters, runHandler, startWaiting, testDir, uuidsIn } from './helpers/env.js';

const dir = testDir();
const exe = compileCrash(dir);
const core = makeCore(exe, path.join(dir, 'made'));
const coreBytes = fs.readFileSync(core);

test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A prepared archive with handler.conf from coresnap.conf lines. */
function archiveWith(name: string, confLines: string[], parent = dir): string {
  const archive = path.join(parent, name);
  const config = parseCoresnapConf([`archive.path = ${archive}`, ...confLines].join('\n'), null, { env: {}, withoutCoroner: true });
  const owner = ensureUser('coresnap', true);
  prepareArchive(new ArchiveLayout(archive), owner);
  fs.writeFileSync(path.join(archive, 'state', 'handler.conf'), handlerConfText(config, owner));
  return archive;
}

test('spools the core 0600 for the analysis user, with what /proc knew, and logs the guide\'s line', async (t) => {
  const archive = archiveWith('a-spool', []);
  const proc = await startWaiting(exe, { LANG: 'C.UTF-8', MY_SECRET_TOKEN: 'hunter2' });
  try {
    const run = runHandler(archive, core, proc.pid);
    t.is(run.code, 0, run.stderr);
  } finally {
    proc.kill('SIGKILL');
  }
  const [uuid, ...more] = uuidsIn(archive, 'pending');
  t.truthy(uuid);
  t.is(more.length, 0);
  const spooled = path.join(archive, 'pending', uuid as string);
  const st = fs.statSync(spooled);
  t.is(st.mode & 0o777, 0o600);
  t.is(st.uid, ensureUser('coresnap', false)?.uid ?? -1);
  t.true(fs.readFileSync(spooled).equals(coreBytes), 'the spooled core is byte for byte what came in');
  const meta = JSON.parse(fs.readFileSync(path.join(archive, 'meta', `${uuid}.json`), 'utf8'));
  t.is(meta.uuid, uuid);
  t.is(meta.executable, exe);
  t.deepEqual(meta.cmdline, [exe, 'wait']);
  t.is(meta.pid, proc.pid);
  t.is(meta.coreSize, coreBytes.length);
  t.is(meta.environment.LANG, 'C.UTF-8');
  t.false('MY_SECRET_TOKEN' in meta.environment, 'only allow-listed environment names are kept');
  t.false(fs.readFileSync(path.join(archive, 'meta', `${uuid}.json`), 'utf8').includes('hunter2'));
  t.regex(meta.maps, new RegExp(exe.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  t.deepEqual(fs.readdirSync(path.join(archive, 'tmp')), []);
  t.is(readCounters(archive).stored, 1);
  const log = fs.readFileSync(path.join(archive, 'log', 'coresnap.log'), 'utf8');
  t.regex(log, new RegExp(`coresnap\\[\\d+\\]: Crash dump archived in ${archive}/pending/${uuid} `));
});

test('a core size limit of 0 is skipped and counted, unless dump.ignore_limit; a small limit truncates', async (t) => {
  const skip = archiveWith('a-limit0', []);
  const keep = archiveWith('a-ignore', ['dump.ignore_limit = true']);
  const proc = await startWaiting(exe);
  try {
    t.is(runHandler(skip, core, proc.pid, { limit: '0' }).code, 0);
    t.is(runHandler(keep, core, proc.pid, { limit: '0' }).code, 0);
    t.is(runHandler(skip, core, proc.pid, { limit: '8192' }).code, 0);
  } finally {
    proc.kill('SIGKILL');
  }
  const skipped = uuidsIn(skip, 'pending');
  t.is(skipped.length, 1, 'only the 8192-byte one');
  t.is(fs.statSync(path.join(skip, 'pending', skipped[0] as string)).size, 8192);
  t.true(JSON.parse(fs.readFileSync(path.join(skip, 'meta', `${skipped[0]}.json`), 'utf8')).truncated);
  t.is(readCounters(skip)['skipped.limit'], 1);
  t.is(uuidsIn(keep, 'pending').length, 1);
});

test('a storm of one program keeps dump.rate per window and counts the rest; another program still gets in', async (t) => {
  const archive = archiveWith('a-rate', ['dump.rate = 3/1h']);
  const other = compileCrash(dir, 'other');
  const proc = await startWaiting(exe);
  const otherProc = await startWaiting(other);
  try {
    for (let i = 0; i < 8; i++) t.is(runHandler(archive, core, proc.pid).code, 0);
    t.is(runHandler(archive, core, otherProc.pid).code, 0);
  } finally {
    proc.kill('SIGKILL');
    otherProc.kill('SIGKILL');
  }
  const stored = uuidsIn(archive, 'pending');
  t.is(stored.length, 4);
  const counters = readCounters(archive);
  t.is(counters.stored, 4);
  t.is(counters['dropped.rate'], 5);
  const executables = stored.map((u) => JSON.parse(fs.readFileSync(path.join(archive, 'meta', `${u}.json`), 'utf8')).executable);
  t.is(executables.filter((e) => e === other).length, 1);
});

test('dump.quota on a small tmpfs: nothing is written below the quota, and spooling resumes above it', async (t) => {
  const mnt = path.join(dir, 'small-fs');
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tmpfs', mnt]);
  const proc = await startWaiting(exe);
  try {
    const archive = archiveWith('archive', ['dump.quota = 4M'], mnt);
    // Leave about 3 MiB free: below the 4 MiB the quota keeps.
    const filler = path.join(mnt, 'filler');
    const free = () => {
      const st = fs.statfsSync(mnt);
      return st.bavail * st.bsize;
    };
    fs.writeFileSync(filler, Buffer.alloc(free() - 3 * 1024 * 1024));
    t.is(runHandler(archive, core, proc.pid).code, 0);
    t.deepEqual(uuidsIn(archive, 'pending'), []);
    t.deepEqual(fs.readdirSync(path.join(archive, 'tmp')), [], 'not a byte written');
    t.is(readCounters(archive)['dropped.quota'], 1);
    t.regex(fs.readFileSync(path.join(archive, 'log', 'coresnap.log'), 'utf8'), /not saved: \d+ bytes free in .*, dump\.quota keeps 4194304/);
    fs.rmSync(filler);
    t.is(runHandler(archive, core, proc.pid).code, 0);
    t.is(uuidsIn(archive, 'pending').length, 1);
  } finally {
    proc.kill('SIGKILL');
    execFileSync('umount', [mnt]);
  }
});

test('an archive folder that is a link, or writable by others, is refused and nothing is written', async (t) => {
  const archive = archiveWith('a-evil', []);
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  fs.rmSync(path.join(archive, 'pending'), { recursive: true });
  fs.symlinkSync(elsewhere, path.join(archive, 'pending'));
  const loose = archiveWith('a-loose', []);
  fs.chmodSync(path.join(loose, 'meta'), 0o777);
  const proc = await startWaiting(exe);
  try {
    t.is(runHandler(archive, core, proc.pid).code, 1);
    t.is(runHandler(loose, core, proc.pid).code, 1);
  } finally {
    proc.kill('SIGKILL');
  }
  t.deepEqual(fs.readdirSync(elsewhere), []);
  t.deepEqual(uuidsIn(loose, 'pending'), []);
});

test('outside capture.only the process gets what core_pattern "core" gives: a core in its working directory', async (t) => {
  const archive = archiveWith('a-only', ['capture.only = /nonexistent/only/']);
  const cwd = path.join(dir, 'only-cwd');
  fs.mkdirSync(cwd);
  const proc = await startWaiting(exe, {}, cwd);
  const expected = path.join(cwd, fs.readFileSync('/proc/sys/kernel/core_uses_pid', 'utf8').trim() === '0' ? 'core' : `core.${proc.pid}`);
  const existed = fs.existsSync(expected);
  t.false(existed, `${expected} must not exist before the test`);
  try {
    t.is(runHandler(archive, core, proc.pid).code, 0);
    t.true(fs.readFileSync(expected).equals(coreBytes));
    t.is(fs.statSync(expected).mode & 0o777, 0o600);
    t.deepEqual(uuidsIn(archive, 'pending'), []);
    t.is(readCounters(archive).passed_through, 1);
  } finally {
    proc.kill('SIGKILL');
    if (!existed) fs.rmSync(expected, { force: true });
  }
});
