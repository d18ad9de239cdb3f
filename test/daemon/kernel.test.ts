/**
 * With the kernel: `coresnap install` puts the handler in core_pattern, real programs crash
 * (C with SIGSEGV and SIGABRT, Go with GOTRACEBACK=crash), and their snapshots reach the loopback
 * receiver through coresnapd. Every test here holds the core_pattern lock (helpers/core-pattern.ts)
 * and leaves the pattern as it found it, whatever happens; foreign crashes during the window get
 * an ordinary `core` file (capture.only).
 */

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import test from 'ava';

import { readPattern, readPipeLimit, withCorePattern } from './helpers/core-pattern.js';
import {
  CORESNAP,
  DaemonProcess,
  HANDLER,
  readCounters,
  Receiver,
  sleep,
  uuidsIn,
  waitFor,
  writeConfig,
} from './helpers/env.js';
import { crashWorkdir } from './helpers/workdir.js';

const { root, exe } = crashWorkdir();

const GO_PANIC = `package main

import "fmt"

func crash(depth int) {
	if depth == 0 {
		var m map[string]int
		m["x"] = 1
	}
	crash(depth - 1)
}

func main() {
	fmt.Println("panicking")
	crash(3)
}
`;

function buildGo(dir: string): string {
  const src = path.join(dir, 'gopanic.go');
  const out = path.join(dir, 'gopanic');
  fs.writeFileSync(src, GO_PANIC);
  const go = fs.existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go';
  execFileSync(go, ['build', '-o', out, src], { cwd: dir, env: { ...process.env, GOFLAGS: '-mod=mod', CGO_ENABLED: '0' }, stdio: 'pipe' });
  fs.chmodSync(out, 0o755);
  return out;
}

/** Runs `program args` with `ulimit -c <limit>` in `cwd`; resolves with its pid once it is gone. */
function crash(program: string, args: string[], cwd: string, limit = 'unlimited', env: NodeJS.ProcessEnv = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `ulimit -c ${limit}; exec "$0" "$@"`, program, ...args], { cwd, stdio: 'ignore', env: { ...process.env, ...env } });
    child.once('error', reject);
    child.once('exit', () => resolve(child.pid ?? -1));
  });
}

function coresnap(args: string[]): string {
  return execFileSync(CORESNAP, args, { encoding: 'utf8' });
}

test.serial('install and uninstall are idempotent; real C and Go crashes reach the server; ulimit -c 0 is skipped; the handler spools while the daemon is down', async (t) => {
  const goProgram = buildGo(root);
  const rx = new Receiver();
  await rx.start();
  const dir = path.join(root, 'e2e');
  fs.mkdirSync(dir, { mode: 0o755 });
  const env = writeConfig(dir, rx.url, { blackhole: 'tok-bh' }, [`capture.only = ${root}/`]);
  t.teardown(() => rx.stop());
  await withCorePattern(async (lock) => {
    const installed = coresnap(['install', '-c', env.conf]);
    const pattern = `|${HANDLER} --archive=${env.archive} %P %I %s %c %d %t %e`;
    t.true(installed.startsWith(`installed: core_pattern = ${pattern}\n`), installed);
    t.regex(installed, new RegExp(`uninstall restores: ${lock.original.replace(/[|.*+?^${}()[\]\\]/g, '\\$&')}\\n`));
    t.is(readPattern(), pattern);
    t.true(readPipeLimit() > 0, 'the kernel waits for the handler');
    t.true(coresnap(['install', '-c', env.conf]).startsWith('already installed'));
    t.regex(coresnap(['uninstall', '-c', env.conf]), /^uninstalled: core_pattern = /);
    t.is(readPattern(), lock.original);
    t.regex(coresnap(['uninstall', '-c', env.conf]), /^not installed/);

    // Starting the daemon installs the handler.
    const daemon = new DaemonProcess(env.conf, []);
    try {
      await daemon.waitForLog(/coresnapd started/);
      t.is(readPattern(), pattern);
      const segvPid = await crash(exe, ['segv'], dir);
      // The guide's test: kill -SIGABRT <pid> of a running program (whose ulimit -c allows a core).
      const waiting = spawn('sh', ['-c', `ulimit -c unlimited; exec "${exe}" wait`], { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'] });
      await new Promise((resolve) => waiting.stdout?.once('data', resolve));
      execFileSync('kill', ['-SIGABRT', String(waiting.pid)]);
      const goPid = await crash(goProgram, [], dir, 'unlimited', { GOTRACEBACK: 'crash' });
      await crash(exe, ['segv'], dir, '0');
      await waitFor(() => `three crashes at the server\n--- coresnapd ---\n${daemon.output}`, () => rx.posts.length === 3, 120_000);
      const byPid = new Map(rx.posts.map((p) => [Number(p.body.attributes?.pid), p.body]));
      t.is(byPid.get(segvPid)?.attributes?.signal, 'SIGSEGV');
      t.is(byPid.get(waiting.pid ?? -1)?.attributes?.signal, 'SIGABRT');
      t.is(byPid.get(goPid)?.attributes?.application, 'gopanic');
      t.is(byPid.get(goPid)?.attributes?.signal, 'SIGABRT', 'GOTRACEBACK=crash aborts');
      t.is(readCounters(env.archive)['skipped.limit'], 1);
      t.regex(fs.readFileSync(path.join(env.archive, 'log', 'coresnap.log'), 'utf8'), /Crash dump archived in .*\/pending\//);
      t.false(fs.existsSync(path.join(dir, 'core')), 'our own crashes went to the archive');
    } finally {
      await daemon.stop();
    }
    // Stopping the daemon leaves the handler in place: the next crash waits in pending/.
    t.is(readPattern(), pattern);
    const downPid = await crash(exe, ['segv'], dir);
    const [waitingUuid] = await waitFor('the crash spooled with the daemon down', () => {
      const pending = uuidsIn(env.archive, 'pending');
      return pending.length === 1 ? pending : undefined;
    });
    t.regex(coresnap(['list', '-c', env.conf]), new RegExp(`pending/${waitingUuid!.slice(0, 12)}\\.\\.\\. c-- crashy`));
    const again = new DaemonProcess(env.conf, []);
    try {
      await again.waitForLog(new RegExp(`crash ${waitingUuid} processed`), 60_000);
      t.true(rx.posts.some((p) => p.body.attributes?.pid === downPid));
    } finally {
      await again.stop();
    }
    t.regex(coresnap(['uninstall', '-c', env.conf]), /^uninstalled/);
  });
  t.is(readPattern(), 'core');
});

test.serial('a storm of crashes of one program: stored + our drops + the kernel\'s drops == crashes started, exactly', async (t) => {
  const storm = Number(process.env.CORESNAP_STORM ?? 300); // the storm: 300 crashes of one program in seconds
  const rx = new Receiver();
  await rx.start();
  const dir = path.join(root, 'storm');
  fs.mkdirSync(dir, { mode: 0o755 });
  // The kernel reports its own drops ("over core_pipe_limit") in dmesg, but rate-limits those
  // messages (10 per 5 s), so beyond a few they cannot be counted one by one. With a pipe limit
  // above the storm the kernel drops none, and dmesg must confirm it; the other ways a crash can
  // end (stored, our rate limit) are counted per pid.
  const env = writeConfig(dir, rx.url, { blackhole: 'tok' }, [`capture.only = ${root}/`, 'dump.rate = 10/1h', `dump.pipe_limit = ${storm + 16}`]);
  t.teardown(() => rx.stop());
  const dmesgBefore = execFileSync('dmesg', { encoding: 'utf8' }).split('\n').length;
  let started: number[] = [];
  await withCorePattern(async () => {
    const daemon = new DaemonProcess(env.conf, []);
    try {
      await daemon.waitForLog(/coresnapd started/);
      // One shell starts them all as fast as it can and prints each pid.
      const out = execFileSync('sh', ['-c', `ulimit -c unlimited; i=0; while [ $i -lt ${storm} ]; do "${exe}" segv & echo $!; i=$((i+1)); done; wait`], {
        cwd: dir,
        encoding: 'utf8',
      });
      started = out.split('\n').filter(Boolean).map(Number);
      t.is(started.length, storm);
      // Handlers still running finish within moments (the kernel waits for them).
      await waitFor('the handler counters to settle', async () => {
        const c = readCounters(env.archive);
        const a = (c.stored ?? 0) + (c['dropped.rate'] ?? 0);
        await sleep(1000);
        const c2 = readCounters(env.archive);
        return a === (c2.stored ?? 0) + (c2['dropped.rate'] ?? 0) && a > 0;
      });
      const counters = readCounters(env.archive);
      await waitFor('every stored crash at the server', () => rx.posts.length === counters.stored, 180_000);
    } finally {
      await daemon.stop();
      coresnap(['uninstall', '-c', env.conf]);
    }
  });

  const counters = readCounters(env.archive);
  const startedSet = new Set(started);
  // Per pid: what the server got, what the handler dropped (its log names each), what the kernel skipped.
  const storedPids = new Set(rx.posts.map((p) => Number(p.body.attributes?.pid)));
  const log = fs.readFileSync(path.join(env.archive, 'log', 'coresnap.log'), 'utf8');
  const droppedPids = new Set([...log.matchAll(/\(pid (\d+)\) dropped: more than/g)].map((m) => Number(m[1])));
  const dmesg = execFileSync('dmesg', { encoding: 'utf8' }).split('\n').slice(dmesgBefore - 1);
  const kernelPids = new Set(dmesg.flatMap((l) => [...l.matchAll(/coredump: (\d+)\(\w+\): over core_pipe_limit/g)].map((m) => Number(m[1]))));
  const suppressed = dmesg.some((l) => /callbacks suppressed/.test(l) && /coredump/.test(l));
  const accounted = new Set([...storedPids, ...droppedPids, ...kernelPids].filter((p) => startedSet.has(p)));
  const missing = started.filter((p) => !accounted.has(p));
  t.is(counters.stored, storedPids.size);
  t.is(counters['dropped.rate'], droppedPids.size);
  t.is(counters.failed ?? 0, 0);
  t.is(storedPids.size, 10, 'dump.rate keeps the first 10 of the window');
  t.deepEqual(missing, [], `every crash accounted for: ${storedPids.size} stored + ${droppedPids.size} dropped by us + ${kernelPids.size} by the kernel of ${storm}${suppressed ? ' (the kernel rate-limited its messages)' : ''}`);
  t.is(storedPids.size + droppedPids.size + kernelPids.size, storm);
  t.is(readPattern(), 'core');
});
