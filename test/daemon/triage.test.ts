/**
 * `coresnap triage -- <command>`, the CI step: real crashes of a corpus program run by the
 * command (directly and as a child of a shell that goes on), their backtraces in the output, the
 * job summary and the snapshots; the command's own exit status; core_pattern given back. Each
 * test holds the core_pattern lock the daemon tests share.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { corpusDir } from '../helpers/corpus.js';
import { runBin } from '../helpers/run.js';
import { readPattern, withCorePattern } from './helpers/core-pattern.js';

const crasher = () => {
  const exe = path.join(corpusDir(), 'corpus', 'c-segv-O0', 'exe');
  if (!fs.existsSync(exe)) throw new Error(`the corpus program ${exe} is missing: run scripts/corpus.sh`);
  return exe;
};

function scratch(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coresnap-triage-test-'));
  // Reachable by the unprivileged user the commands run as, as a CI workspace is.
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test.serial('a crash in a child of the command: its backtrace, a summary and a snapshot; the command\'s exit status; core_pattern back', async (t) => {
  const dir = scratch(t);
  const summary = path.join(dir, 'summary.md');
  const snapshots = path.join(dir, 'snapshots');
  await withCorePattern(async (lock) => {
    // As an unprivileged user, as a CI job runs its tests (triage itself needs root).
    const r = await runBin('coresnap', ['triage', '--user', 'nobody', '--snapshots', snapshots, '--summary', summary, '--', 'bash', '-c', `id -un; echo "home=$HOME"; ${crasher()}; echo the shell goes on; exit 3`]);
    t.is(r.code, 3, r.stderr);
    t.is(readPattern(), lock.original, 'core_pattern is given back');
    t.regex(r.stdout, /^nobody\n/);
    // The user's own home, not root's.
    t.regex(r.stdout, /\nhome=\/nonexistent\n/);
    t.regex(r.stdout, /the shell goes on/);
    t.regex(r.stdout, /coresnap triage: `bash -c 'id -un; .*; echo the shell goes on; exit 3'` exited with 3; 1 crash\n/);
    t.regex(r.stdout, /── crash 1 of 1: exe \(pid \d+\) SIGSEGV — \S+\/core\.\d+\.\d+, snapshot /);
    // bt's own text, every thread.
    t.regex(r.stdout, /terminated by SIGSEGV \(SEGV_MAPERR\) at address 0x0/);
    t.regex(r.stdout, /#0 +0x[0-9a-f]+ in level3 at \S+crash\.c:\d+ from exe \[context\]/);
    t.regex(r.stdout, /in idle_worker at/);
    // The temporary core folder is gone; the snapshot stays.
    const core = /— (\S+\/core\.\d+\.\d+),/.exec(r.stdout)![1]!;
    t.false(fs.existsSync(path.dirname(core)));
    const [file] = fs.readdirSync(snapshots);
    // Written as the user, who can clean it up.
    t.is(fs.statSync(path.join(snapshots, file!)).uid, fs.statSync(snapshots).uid);
    t.not(fs.statSync(snapshots).uid, 0);
    const snapshot = JSON.parse(fs.readFileSync(path.join(snapshots, file!), 'utf8'));
    t.is(snapshot.signal.name, 'SIGSEGV');
    t.deepEqual(snapshot.threads[snapshot.mainThread].stack.slice(0, 4).map((f: { funcName: string }) => f.funcName), ['level3', 'level2', 'level1', 'main']);
    const md = fs.readFileSync(summary, 'utf8');
    t.regex(md, /^### coresnap: 1 crash during `bash -c 'id -un; .*'` \(exit 3\)/);
    t.regex(md, /\*\*exe\*\* \(pid \d+\) SIGSEGV\n\n```\n#0 level3 \(\S+crash\.c:\d+\)\n#1 level2 /);
  });
});

test.serial('no crash: the command\'s status and a one-line verdict; --fail-on-crash fails a run that crashed yet succeeded; --cores keeps them; --json', async (t) => {
  const dir = scratch(t);
  await withCorePattern(async (lock) => {
    const calm = await runBin('coresnap', ['triage', '--', 'true']);
    t.is(calm.code, 0, calm.stderr);
    t.is(calm.stdout, 'coresnap triage: `true` exited with 0; no process crashed\n');

    // The command, as nobody, also plants a link in the open core folder: triage reads only what
    // the kernel wrote, never through a link.
    const cores = path.join(dir, 'cores');
    const forgiven = await runBin('coresnap', [
      'triage', '--user', 'nobody', '--fail-on-crash', '--cores', cores, '--json', '--',
      'bash', '-c', `${crasher()}; ln -s /etc/shadow ${cores}/core.1.1; exit 0`,
    ]);
    t.is(forgiven.code, 1, forgiven.stderr);
    const result = JSON.parse(forgiven.stdout);
    t.is(result.exitCode, 0);
    t.is(result.crashes.length, 1);
    t.is(result.crashes[0].signal, 'SIGSEGV');
    t.is(result.crashes[0].application, 'exe');
    t.regex(result.crashes[0].frames[0], /^level3 \(\S+crash\.c:\d+\)$/);
    t.true(fs.existsSync(result.crashes[0].core), 'the core is kept in --cores');
    t.is(path.dirname(result.crashes[0].core), cores);
    t.false(forgiven.stdout.includes('root:'), 'nothing of the linked file');
    t.is(readPattern(), lock.original);

    // Killed by a signal itself: 128 + the signal, as a shell reports it.
    const killed = await runBin('coresnap', ['triage', '--', crasher()]);
    t.is(killed.code, 139);
    t.regex(killed.stdout, /exited with 139 \(SIGSEGV\); 1 crash/);
    t.is(readPattern(), lock.original);
  });
});
