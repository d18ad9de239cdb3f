/**
 * Running the daemon's helpers (ptrace, the defaults command, zstd) as child processes: with a
 * time limit, as the unprivileged analysis user when there is one, and tied to the daemon's life
 * (`setpriv --pdeathsig KILL`), so that a daemon killed with SIGKILL leaves no ptrace behind still
 * writing a snapshot the next daemon is about to write again.
 */

import { spawn, type StdioOptions } from 'node:child_process';
import fs from 'node:fs';

import type { Owner } from './archive.js';

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Set when the program could not be started at all. */
  spawnError: string | null;
  ms: number;
}

export interface ChildOptions {
  /** Run as this user (only when the daemon is root). */
  as?: Owner | null;
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  /** Descriptors for stdin/stdout instead of pipes (zstd). */
  stdinFd?: number;
  stdoutFd?: number;
  /** Keep at most this much of stdout/stderr (bytes). */
  maxOutput?: number;
  cwd?: string;
}

let setprivAvailable: boolean | null = null;
function haveSetpriv(): boolean {
  setprivAvailable ??= ['/usr/bin/setpriv', '/bin/setpriv'].some((p) => {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  return setprivAvailable;
}

/** The argv that runs `file args` with the privilege drop and death signal. */
export function wrappedCommand(file: string, args: string[], as: Owner | null | undefined): { file: string; args: string[] } {
  const isRoot = process.geteuid?.() === 0;
  if (!haveSetpriv()) return { file, args };
  const wrap = ['--pdeathsig', 'KILL'];
  if (as && isRoot) wrap.push('--reuid', String(as.uid), '--regid', String(as.gid), '--clear-groups', '--no-new-privs');
  return { file: 'setpriv', args: [...wrap, '--', file, ...args] };
}

export function runChild(file: string, args: string[], options: ChildOptions): Promise<ChildResult> {
  const started = Date.now();
  const max = options.maxOutput ?? 64 * 1024;
  const command = wrappedCommand(file, args, options.as);
  const stdio: StdioOptions = [options.stdinFd ?? 'ignore', options.stdoutFd ?? 'pipe', 'pipe'];
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const child = spawn(command.file, command.args, { stdio, env: options.env ?? process.env, cwd: options.cwd ?? '/' });
    const finish = (result: Omit<ChildResult, 'stdout' | 'stderr' | 'ms' | 'timedOut'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...result, stdout, stderr, timedOut, ms: Date.now() - started });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => {
      if (stdout.length < max) stdout += chunk.toString('utf8').slice(0, max - stdout.length);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      // Keep the end: the last lines say what went wrong.
      stderr = (stderr + chunk.toString('utf8')).slice(-max);
    });
    child.on('error', (err) => finish({ code: null, signal: null, spawnError: err.message }));
    child.on('close', (code, signal) => finish({ code, signal, spawnError: null }));
  });
}

/** `file args...` quoted for a shell, so a logged command can be pasted and rerun. */
export function shellQuote(words: string[]): string {
  return words.map((w) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}
