/**
 * `coresnap triage [options] -- <command> [args...]`: the crash-triage step of a CI job.
 *
 * Runs the command with core dumps on and caught in a folder of their own, then, for every process
 * that crashed meanwhile, prints the readable backtrace of all its threads (`bt`), writes its
 * snapshot (`ptrace`) when asked, adds a summary to the job's page (`$GITHUB_STEP_SUMMARY`, or
 * `--summary FILE`), and exits with the command's own status (128 + the signal when it was killed).
 * core_pattern is the machine's, so this needs root; it is set for the run and given back when the
 * command ends, whatever way it ends (a SIGKILL of this process is the one thing it cannot undo).
 * While the command runs, a crash of any process on the machine lands in the folder too.
 */

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CORE_PATTERN, CORE_PATTERN_MAX, readCorePattern } from '../daemon/install.js';
import { findNativeTool } from '../native/index.js';
import { InputError } from './errors.js';

export interface TriageOptions {
  /** Where the cores go (kept); default a temporary folder removed afterwards. */
  cores?: string;
  /** Where to write one snapshot (JSON) per crash. */
  snapshots?: string;
  /** A Markdown summary is appended here (default `$GITHUB_STEP_SUMMARY` when set). */
  summary?: string;
  /** Print one JSON document instead of the backtraces (the command's own output then goes to stderr). */
  json?: boolean;
  /** Exit 1 when something crashed even though the command succeeded. */
  failOnCrash?: boolean;
  /** Run the command as this user (name or uid) rather than as root: `sudo coresnap triage --user "$USER" -- ...`. */
  user?: string;
}

/** One crash found after the run. */
export interface TriageCrash {
  core: string;
  pid: number | null;
  application: string | null;
  signal: string | null;
  /** The faulting thread's frames, innermost first, as `function (file:line)` or `module+offset`. */
  frames: string[];
  snapshot?: string;
  /** The backtrace text of every thread, as `bt` prints it. */
  backtrace: string;
  /** Why the core could not be read, when it could not. */
  error?: string;
}

export interface TriageResult {
  command: string[];
  exitCode: number;
  signal: string | null;
  crashes: TriageCrash[];
}

const SUMMARY_FRAMES = 12;

export async function triage(command: string[], options: TriageOptions): Promise<TriageResult> {
  if (command.length === 0) throw new InputError('give the command to run after --, e.g. coresnap triage -- npm test');
  if (process.geteuid?.() !== 0) throw new InputError('triage points /proc/sys/kernel/core_pattern at its own folder for the run and needs root (in CI: sudo -E coresnap triage -- ...)');
  const runAs = options.user === undefined ? undefined : userIds(options.user);
  const ownFolder = options.cores === undefined;
  const cores = path.resolve(options.cores ?? fs.mkdtempSync(path.join(os.tmpdir(), 'coresnap-triage-')));
  try {
    fs.mkdirSync(cores, { recursive: true });
    // The kernel writes a core as the crashing process's user: any user, as in /tmp.
    if (ownFolder) fs.chmodSync(cores, 0o1777);
    const pattern = `${cores}/core.%p`;
    if (pattern.length > CORE_PATTERN_MAX) throw new InputError(`the core folder's path is too long for core_pattern (${CORE_PATTERN_MAX} characters at most): ${cores}`);
    const before = new Set(fs.readdirSync(cores));

    const previous = readCorePattern();
    setCorePattern(pattern);
    let outcome: { code: number | null; signal: NodeJS.Signals | null };
    try {
      outcome = await run(command, options.json === true, runAs);
    } finally {
      setCorePattern(previous);
    }
    const exitCode = outcome.code ?? 128 + (outcome.signal ? os.constants.signals[outcome.signal] : 0);

    const found = fs
      .readdirSync(cores)
      .filter((f) => /^core\.\d+$/.test(f) && !before.has(f))
      .map((f) => path.join(cores, f))
      .sort((a, b) => fs.statSync(a).mtimeMs - fs.statSync(b).mtimeMs);
    if (options.snapshots) fs.mkdirSync(options.snapshots, { recursive: true });
    const crashes = found.map((core) => analyse(core, options.snapshots));
    return { command, exitCode, signal: outcome.signal, crashes };
  } finally {
    if (ownFolder) fs.rmSync(cores, { recursive: true, force: true });
  }
}

function setCorePattern(pattern: string): void {
  try {
    fs.writeFileSync(CORE_PATTERN, `${pattern}\n`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputError(
      code === 'EROFS' || code === 'EACCES' || code === 'EPERM'
        ? `cannot set ${CORE_PATTERN} (${code}): inside a container it is the host's; run the job privileged, or triage on the host`
        : `cannot set ${CORE_PATTERN}: ${(err as Error).message}`,
    );
  }
}

/**
 * Runs `command` with the core size limit raised as far as the hard limit allows, its output
 * shared with ours (its standard output sent to our standard error when ours carries JSON).
 */
function run(command: string[], keepStdoutClean: boolean, runAs: { uid: number; gid: number } | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', 'ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)"; exec "$@"', 'coresnap-triage', ...command], {
      stdio: ['inherit', keepStdoutClean ? 2 : 'inherit', 'inherit'],
      ...(runAs ?? {}),
    });
    // A Ctrl-C or a CI cancel goes to the command; core_pattern is restored once it has ended.
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const s of signals) process.on(s, forward);
    const done = () => {
      for (const s of signals) process.off(s, forward);
    };
    child.once('error', (err) => {
      done();
      reject(new InputError(`cannot run ${command[0]}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      done();
      resolve({ code, signal });
    });
  });
}

/** A user's uid and primary gid, by name or number. */
function userIds(user: string): { uid: number; gid: number } {
  const id = (flag: '-u' | '-g') => {
    const r = spawnSync('id', [flag, user], { encoding: 'utf8' });
    const n = Number(r.stdout.trim());
    if (r.status !== 0 || !Number.isInteger(n)) throw new InputError(`--user ${user}: there is no such user`);
    return n;
  };
  return { uid: id('-u'), gid: id('-g') };
}

function analyse(core: string, snapshotDir: string | undefined): TriageCrash {
  const crash: TriageCrash = { core, pid: Number(path.basename(core).slice('core.'.length)) || null, application: null, signal: null, frames: [], backtrace: '' };
  const bt = spawnSync(findNativeTool('bt'), [core], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  crash.backtrace = bt.stdout ?? '';
  if (bt.status !== 0) crash.error = (bt.stderr || `bt exited with ${bt.status}`).trim();
  const snapshot = snapshotDir ? path.join(snapshotDir, `${path.basename(core)}.json`) : path.join(os.tmpdir(), `coresnap-triage-${process.pid}-${path.basename(core)}.json`);
  const ptrace = spawnSync(findNativeTool('ptrace'), [core, '-o', snapshot], { encoding: 'utf8' });
  if (ptrace.status !== 0) {
    crash.error ??= (ptrace.stderr || `ptrace exited with ${ptrace.status}`).trim();
    return crash;
  }
  try {
    const report = JSON.parse(fs.readFileSync(snapshot, 'utf8')) as SnapshotShape;
    crash.application = typeof report.attributes?.application === 'string' ? report.attributes.application : null;
    crash.signal = report.signal?.name ?? null;
    const stack = report.threads?.[report.mainThread ?? '']?.stack ?? [];
    crash.frames = stack.map(frameText);
  } finally {
    if (snapshotDir) crash.snapshot = snapshot;
    else fs.rmSync(snapshot, { force: true });
  }
  return crash;
}

interface SnapshotShape {
  mainThread?: string;
  signal?: { name?: string };
  attributes?: Record<string, unknown>;
  threads?: Record<string, { stack?: SnapshotFrame[] }>;
}
interface SnapshotFrame {
  funcName?: string;
  sourcePath?: string;
  line?: number;
  library?: string;
  libraryOffset?: string;
  address?: string;
  inlined?: boolean;
}

function frameText(f: SnapshotFrame): string {
  const where = f.sourcePath ? ` (${f.sourcePath}${f.line ? `:${f.line}` : ''})` : '';
  if (f.funcName) return `${f.funcName}${f.inlined ? ' [inlined]' : ''}${where}`;
  if (f.library) return `${path.basename(f.library)}+${f.libraryOffset ?? '?'}`;
  return f.address ?? '??';
}

/** The job log's text: one block per crash, the backtraces as bt prints them. */
export function renderTriage(result: TriageResult): string {
  const lines: string[] = [];
  const n = result.crashes.length;
  lines.push(`coresnap triage: \`${shellWords(result.command)}\` exited with ${result.exitCode}${result.signal ? ` (${result.signal})` : ''}; ${n === 0 ? 'no process crashed' : `${n} crash${n === 1 ? '' : 'es'}`}`);
  result.crashes.forEach((c, i) => {
    lines.push('', `── crash ${i + 1} of ${n}: ${c.application ?? '?'} (pid ${c.pid ?? '?'}) ${c.signal ?? ''} — ${c.core}${c.snapshot ? `, snapshot ${c.snapshot}` : ''}`);
    if (c.error) lines.push(`(could not read it all: ${c.error})`);
    lines.push(c.backtrace.trimEnd());
  });
  return `${lines.join('\n')}\n`;
}

/** The job page's Markdown: the faulting thread of each crash. */
export function summaryMarkdown(result: TriageResult): string {
  const n = result.crashes.length;
  const out = [`### coresnap: ${n === 0 ? 'no crashes' : `${n} crash${n === 1 ? '' : 'es'}`} during \`${shellWords(result.command).replace(/`/g, "'")}\` (exit ${result.exitCode})`, ''];
  for (const c of result.crashes) {
    out.push(`**${c.application ?? '?'}** (pid ${c.pid ?? '?'}) ${c.signal ?? 'crashed'}`, '', '```');
    out.push(...c.frames.slice(0, SUMMARY_FRAMES).map((f, i) => `#${i} ${f}`));
    if (c.frames.length > SUMMARY_FRAMES) out.push(`... ${c.frames.length - SUMMARY_FRAMES} more`);
    if (c.frames.length === 0) out.push(c.error ?? '(no frames)');
    out.push('```', '');
  }
  return `${out.join('\n')}\n`;
}

/** The command as one would type it: words with spaces or quotes quoted. */
function shellWords(words: string[]): string {
  return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}
