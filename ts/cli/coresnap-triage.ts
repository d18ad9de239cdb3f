/**
 * `coresnap triage [options] -- <command> [args...]`: the crash-triage step of a CI job.
 *
 * Runs the command with core dumps on and caught in a folder of their own, then, for every process
 * that crashed meanwhile, prints the readable backtrace of all its threads (`bt`), writes its
 * snapshot (`ptrace`) when asked, adds a summary to the job's page (`$GITHUB_STEP_SUMMARY`, or
 * `--summary FILE`), and exits with the command's own status (128 + the signal when it was killed).
 * core_pattern is the machine's, so this needs root; it is set for the run and given back when the
 * command ends, whatever way it ends (a SIGKILL of this process is the one thing it cannot undo),
 * unless someone else changed it meanwhile. While the command runs, a crash of any process of this
 * machine's mount namespace lands in the folder too. With `--user`, the command and the analysis
 * (bt, ptrace, the snapshots they write) run as that user, with its groups and home: root only
 * sets core_pattern and reads nothing a user could have planted.
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
  /** Run the command, and the analysis, as this user rather than as root: `sudo coresnap triage --user "$USER" -- ...`. */
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
/** Crashes detailed on the job page (GitHub drops a summary over 1 MiB whole). */
const SUMMARY_CRASHES = 20;
/** How long bt or ptrace may take over one core before it is given up. */
const ANALYSIS_TIMEOUT_MS = 120_000;

/** A user to run as: ids, name and home from the passwd database. */
interface RunAs {
  uid: number;
  gid: number;
  name: string;
  home: string;
}

export async function triage(command: string[], options: TriageOptions): Promise<TriageResult> {
  if (command.length === 0) throw new InputError('give the command to run after --, e.g. coresnap triage -- npm test');
  if (process.geteuid?.() !== 0) throw new InputError('triage points /proc/sys/kernel/core_pattern at its own folder for the run and needs root (in CI: sudo -E coresnap triage -- ...)');
  const runAs = options.user === undefined ? undefined : lookUpUser(options.user);
  const ownFolder = options.cores === undefined;
  const cores = path.resolve(options.cores ?? fs.mkdtempSync(path.join(os.tmpdir(), 'coresnap-triage-')));
  // The snapshots of a run without --snapshots: a folder of its own, readable by the analysing user only.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'coresnap-triage-snapshots-'));
  try {
    fs.mkdirSync(cores, { recursive: true });
    // The kernel writes a core as the crashing process's user: any user, as in /tmp.
    fs.chmodSync(cores, 0o1777);
    const pattern = `${cores}/core.%P.%t`;
    if (Buffer.byteLength(pattern) > CORE_PATTERN_MAX) throw new InputError(`the core folder's path is too long for core_pattern (${CORE_PATTERN_MAX} bytes at most): ${cores}`);
    if (cores.includes('%')) throw new InputError(`the core folder's path may not hold a %, which core_pattern would read as a specifier: ${cores}`);
    const before = new Set(fs.readdirSync(cores));
    const snapshots = options.snapshots ? path.resolve(options.snapshots) : scratch;
    fs.mkdirSync(snapshots, { recursive: true });
    if (runAs) {
      fs.chownSync(scratch, runAs.uid, runAs.gid);
      if (options.snapshots) fs.chownSync(snapshots, runAs.uid, runAs.gid);
    }

    const previous = readCorePattern();
    setCorePattern(pattern);
    let outcome: { code: number | null; signal: NodeJS.Signals | null };
    try {
      outcome = await run(command, options.json === true, runAs);
    } finally {
      // Someone else's change meanwhile (coresnap install, another triage) is theirs to undo.
      if (readCorePattern() === pattern) setCorePattern(previous);
    }
    const exitCode = outcome.code ?? 128 + (outcome.signal ? os.constants.signals[outcome.signal] : 0);

    const found: Array<{ file: string; mtime: number }> = [];
    for (const name of fs.readdirSync(cores)) {
      if (!/^core\.\d+\.\d+$/.test(name) || before.has(name)) continue;
      // Only what the kernel wrote: a regular file, not a link someone planted in the open folder.
      const st = fs.lstatSync(path.join(cores, name), { throwIfNoEntry: false });
      if (st?.isFile()) found.push({ file: path.join(cores, name), mtime: st.mtimeMs });
    }
    found.sort((a, b) => a.mtime - b.mtime);
    const crashes = found.map(({ file }) => analyse(file, snapshots, options.snapshots !== undefined, runAs));
    return { command, exitCode, signal: outcome.signal, crashes };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
    if (ownFolder) fs.rmSync(cores, { recursive: true, force: true });
  }
}

function setCorePattern(pattern: string): void {
  try {
    fs.writeFileSync(CORE_PATTERN, `${pattern}\n`);
    if (readCorePattern() !== pattern) throw new Error(`the kernel kept "${readCorePattern()}"`);
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
function run(command: string[], keepStdoutClean: boolean, runAs: RunAs | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const [file, args] = asUser(runAs, '/bin/sh', ['-c', 'ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)"; exec "$@"', 'coresnap-triage', ...command]);
    const child = spawn(file, args, { stdio: ['inherit', keepStdoutClean ? 2 : 'inherit', 'inherit'], env: envFor(runAs) });
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

/** A user's passwd entry, by name or uid. */
function lookUpUser(user: string): RunAs {
  const r = spawnSync('getent', ['passwd', user], { encoding: 'utf8' });
  const fields = r.status === 0 ? r.stdout.split('\n')[0]!.split(':') : [];
  if (fields.length < 7) throw new InputError(`--user ${user}: there is no such user in the passwd database`);
  return { name: fields[0]!, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5]! };
}

/** `file args` as `runAs` (with its supplementary groups), or as is. */
function asUser(runAs: RunAs | undefined, file: string, args: string[]): [string, string[]] {
  if (!runAs) return [file, args];
  return ['setpriv', [`--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, '--init-groups', '--', file, ...args]];
}

function envFor(runAs: RunAs | undefined): NodeJS.ProcessEnv {
  return runAs ? { ...process.env, HOME: runAs.home, USER: runAs.name, LOGNAME: runAs.name } : process.env;
}

/** bt's text and ptrace's snapshot of one core; what goes wrong is said on the crash, not thrown. */
function analyse(core: string, snapshotDir: string, keep: boolean, runAs: RunAs | undefined): TriageCrash {
  const pid = Number(/^core\.(\d+)\./.exec(path.basename(core))?.[1]);
  const crash: TriageCrash = { core, pid: Number.isInteger(pid) ? pid : null, application: null, signal: null, frames: [], backtrace: '' };
  const tool = (name: 'bt' | 'ptrace', args: string[]) => {
    const [file, argv] = asUser(runAs, findNativeTool(name), args);
    return spawnSync(file, argv, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: ANALYSIS_TIMEOUT_MS, env: envFor(runAs) });
  };
  const failure = (name: string, r: ReturnType<typeof spawnSync>) =>
    (r.error ? `${name}: ${r.error.message}` : String(r.stderr || '').trim() || `${name} exited with ${r.status ?? r.signal}`);
  try {
    const bt = tool('bt', [core]);
    crash.backtrace = String(bt.stdout ?? '');
    if (bt.status !== 0) crash.error = failure('bt', bt);
    const snapshot = path.join(snapshotDir, `${path.basename(core)}.json`);
    const ptrace = tool('ptrace', [core, '-o', snapshot]);
    if (ptrace.status !== 0) {
      crash.error ??= failure('ptrace', ptrace);
      return crash;
    }
    const report = JSON.parse(fs.readFileSync(snapshot, 'utf8')) as SnapshotShape;
    crash.application = typeof report.attributes?.application === 'string' ? report.attributes.application : null;
    crash.signal = report.signal?.name ?? null;
    crash.frames = (report.threads?.[report.mainThread ?? '']?.stack ?? []).map(frameText);
    if (keep) crash.snapshot = snapshot;
  } catch (err) {
    crash.error ??= (err as Error).message;
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
  // One line, and not too long: a `run: |` block is many.
  let shown = shellWords(result.command).replace(/\s+/g, ' ').replace(/`/g, "'").trim();
  if (shown.length > 120) shown = `${shown.slice(0, 117)}...`;
  const out = [`### coresnap: ${n === 0 ? 'no crashes' : `${n} crash${n === 1 ? '' : 'es'}`} during \`${shown}\` (exit ${result.exitCode})`, ''];
  for (const c of result.crashes.slice(0, SUMMARY_CRASHES)) {
    out.push(`**${markdownText(c.application ?? '?')}** (pid ${c.pid ?? '?'}) ${c.signal ?? 'crashed'}`, '', '```');
    out.push(...c.frames.slice(0, SUMMARY_FRAMES).map((f, i) => `#${i} ${f}`));
    if (c.frames.length > SUMMARY_FRAMES) out.push(`... ${c.frames.length - SUMMARY_FRAMES} more`);
    if (c.frames.length === 0) out.push(c.error ?? '(no frames)');
    out.push('```', '');
  }
  if (n > SUMMARY_CRASHES) out.push(`... and ${n - SUMMARY_CRASHES} more in the job log.`, '');
  return `${out.join('\n')}\n`;
}

/** Text shown as is in Markdown: its markup characters escaped. */
function markdownText(text: string): string {
  return text.replace(/[\\`*_[\]<>#|]/g, (c) => `\\${c}`);
}

/** The command as one would type it: words with spaces or quotes quoted. */
function shellWords(words: string[]): string {
  return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}
