/**
 * Runs the package's commands the way a user does (through bin/, so the tests also cover how
 * bin/ finds the native executables) and reads what they write.
 */

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../ts/native/index.js';
import type { Snapshot } from '../../ts/native/types.js';
import type { ExpectedCase } from './corpus.js';

export { packageRoot };

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time in milliseconds. */
  ms: number;
}

/** Runs `bin/<command> args...` to completion (never rejects: the result says how it ended). */
export function runBin(command: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const file = path.join(packageRoot, 'bin', command);
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { timeout: options.timeoutMs ?? 300_000, maxBuffer: 256 * 1024 * 1024, env: options.env ?? process.env, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout,
          stderr: e && typeof e.code === 'string' ? `${stderr}${e.message}` : stderr,
          ms: Date.now() - started,
        });
      },
    );
  });
}

/** The ptrace arguments for a corpus case: `--core CORE EXE [--sysroot DIR] [--debug-dir DIR]...`. */
export function ptraceArgsFor(expected: ExpectedCase): string[] {
  const args = ['--core', expected.core, expected.exe];
  if (expected.sysroot) args.push('--sysroot', expected.sysroot);
  for (const dir of expected.debugDirs) args.push('--debug-dir', dir);
  return args;
}

/** A snapshot, or one sentence saying why there is none. */
export type SnapshotOutcome = { snapshot: Snapshot; run: RunResult } | { error: string; run: RunResult };

function tail(text: string, lines = 15): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/** Runs `ptrace ... -o <tmp>` on a case and parses the snapshot it wrote. */
export async function snapshotCase(expected: ExpectedCase, timeoutMs = 300_000): Promise<SnapshotOutcome> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coresnap-test-'));
  const out = path.join(dir, `${expected.name}.json`);
  try {
    const run = await runBin('ptrace', [...ptraceArgsFor(expected), '-o', out], { timeoutMs });
    const command = `ptrace ${ptraceArgsFor(expected).join(' ')} -o ${out}`;
    if (run.signal) return { run, error: `\`${command}\` was killed by ${run.signal} after ${run.ms} ms\n${tail(run.stderr)}` };
    if (run.code !== 0) return { run, error: `\`${command}\` exited with ${run.code}:\n${tail(run.stderr)}` };
    let size: number;
    try {
      size = statSync(out).size;
    } catch {
      return { run, error: `\`${command}\` exited 0 but wrote no snapshot to ${out}${run.stderr ? `; stderr:\n${tail(run.stderr)}` : ''}` };
    }
    const text = readFileSync(out, 'utf8');
    try {
      return { run, snapshot: JSON.parse(text) as Snapshot };
    } catch (err) {
      return { run, error: `\`${command}\` wrote ${size} bytes that are not JSON (${(err as Error).message}): ${text.slice(0, 200)}` };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
