/**
 * `ptrace <pid>` and `bt <pid>` on a live, hung process (test/cases/live-hang.sh): every thread is
 * stopped, walked and shown at the function it is blocked in (ground truth from the program's
 * own roles and test/cases/live/expected.json), and the process runs on afterwards.
 */

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { matchFrames, type CrashSpec, type FrameToken } from '../helpers/corpus.js';
import { packageRoot, runBin } from '../helpers/run.js';

interface LiveInfo {
  pid: number;
  tids: Record<string, number>;
}

const script = path.join(packageRoot, 'test', 'cases', 'live-hang.sh');

function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The state follows the command name in parentheses, which may itself hold spaces.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

function threadStates(pid: number): string[] {
  return execFileSync('ls', [`/proc/${pid}/task`], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    });
}

test.serial('ptrace <pid> snapshots every thread of a hung process, which then runs on', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coresnap-live-'));
  let pid: number | undefined;
  try {
    execFileSync(script, ['start', dir, '120'], { encoding: 'utf8' });
    const live = JSON.parse(readFileSync(path.join(dir, 'live.json'), 'utf8')) as LiveInfo;
    pid = live.pid;
    const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as {
      threads: number;
      roles: Record<string, { match: 'prefix' | 'after-top'; frames: FrameToken[] }>;
    };

    const out = path.join(dir, 'snapshot.json');
    const run = await runBin('ptrace', [String(pid), '-o', out], { timeoutMs: 60_000 });
    t.is(run.code, 0, `ptrace ${pid} failed: ${run.stderr}`);
    const snapshot = JSON.parse(readFileSync(out, 'utf8'));

    t.is(snapshot.process.source, 'live');
    t.is(snapshot.process.pid, pid);
    t.is(Object.keys(snapshot.threads).length, expected.threads, 'one entry per thread of the process');
    t.is(snapshot.signal, undefined, 'a hang snapshot has no signal');
    t.false(Object.values(snapshot.threads).some((th: any) => th.fault), 'no thread is marked faulting');

    for (const [role, spec] of Object.entries(expected.roles)) {
      const tid = live.tids[role];
      t.truthy(tid, `the program reported a tid for ${role}`);
      const thread = snapshot.threads[String(tid)];
      t.truthy(thread, `thread ${tid} (${role}) is in the snapshot`);
      if (!thread) continue;
      const crashSpec: CrashSpec = { dialect: 'make-corpus', match: spec.match, frames: spec.frames };
      const verdict = matchFrames(crashSpec, thread.stack);
      t.true(verdict.ok, `${role} thread ${tid}: ${verdict.why}`);
      t.truthy(thread.stack[0]?.registers, `${role}: the innermost frame carries registers`);
    }

    // Detached: nothing is left in tracing stop, and the process is still alive.
    t.not(processState(pid), 't');
    t.false(threadStates(pid).includes('t'), 'no thread is left stopped by the tracer');

    // bt on the same process works too, and again leaves it running.
    const bt = await runBin('bt', [String(pid)], { timeoutMs: 60_000 });
    t.is(bt.code, 0, bt.stderr);
    t.regex(bt.stdout, /main_wait/);
    t.false(threadStates(pid).includes('t'));
  } finally {
    if (pid !== undefined) {
      try {
        execFileSync(script, ['stop', dir]);
      } catch {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('ptrace <pid> of a process that does not exist is one clear error', async (t) => {
  // Pids stay below pid_max, so pid_max itself names no process.
  const pidMax = readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim();
  const run = await runBin('ptrace', [pidMax], { timeoutMs: 30_000 });
  t.is(run.code, 1);
  t.regex(run.stderr, /^ptrace: .+/);
  t.notRegex(run.stderr, /panicked/);
});
