/**
 * The shared core-dump corpus (shared/corpus/README.md), read for tests.
 *
 * What the caller does: lists the cases ([[listCases]]), runs the engine on one, and hands the
 * snapshot's frames to [[matchFrames]] / the snapshot to [[checkSnapshot]].
 * What this module does: finds the corpus (`$CORESNAP_CORPUS_DIR`, default
 * `${TMPDIR:-/tmp}/coresnap-corpus`), reads both dialects of expected.json into one
 * [[ExpectedCase]], and judges a snapshot the way the corpus's own checkers judge gdb:
 *   - make-corpus.sh cases: shared/corpus/tools/check.py (`crash_thread.frames` tokens with
 *     `fn` / `inline` / `any` / `repeat`, `match` prefix | after-top, `other_threads_contain`,
 *     `thread_depths`);
 *   - make-arm64-cores.sh cases: shared/corpus/arm64/cases.py (`crashing_thread.frames` as a
 *     contiguous run of names, `?` for any one frame, `inlined`, `thread_count`,
 *     `other_threads.each_contains_in_order` as an in-order subsequence).
 * Names are normalised exactly as the checker of that dialect normalises them.
 */

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { Snapshot, SnapshotFrame } from '../../ts/native/types.js';

/** Where the corpus lives; the same rule as scripts/corpus.sh. */
export function corpusDir(): string {
  return process.env.CORESNAP_CORPUS_DIR || path.join(process.env.TMPDIR || os.tmpdir(), 'coresnap-corpus');
}

/** One frame token of a make-corpus.sh expected.json. */
export interface FrameToken {
  fn?: string;
  inline?: boolean;
  any?: boolean;
  repeat?: number;
}

export type CrashSpec =
  | { dialect: 'make-corpus'; match: 'prefix' | 'after-top'; frames: FrameToken[] }
  | { dialect: 'make-arm64-cores'; frames: string[]; withoutLibcDebuginfo?: string[]; inlined: string[] };

/** Everything a case promises, in one shape for both dialects. */
export interface ExpectedCase {
  /** `x86_64/<case>` or `arm64/<case>`: unique across both generators. */
  id: string;
  name: string;
  dialect: 'make-corpus' | 'make-arm64-cores';
  dir: string;
  exe: string;
  core: string;
  arch: 'x86_64' | 'aarch64';
  /** `--sysroot` for ptrace, from the case's meta. */
  sysroot?: string;
  /** `--debug-dir`s for ptrace, from the case's meta. */
  debugDirs: string[];
  signal: { number: number; code?: number; address?: bigint };
  threadCount: number;
  /** The crashing thread's tid, when the case names it (notes.json or expected.json). */
  crashTid?: number;
  crash: CrashSpec;
  /** make-corpus.sh: every other thread has a frame with this name. */
  otherThreadsContain?: string;
  /** make-arm64-cores.sh: each other thread holds these names in this order. */
  otherThreadsInOrder?: { count: number; names: string[] };
  /** make-corpus.sh many-threads: frames of `fn` per tid. */
  threadDepths?: { fn: string; byTid: Record<string, number> };
  /** test/cases (go-panic): frames that a given thread (by tid) must show, like `crash_thread`. */
  threadFrames?: Record<string, Extract<CrashSpec, { dialect: 'make-corpus' }>>;
}

/** Why the corpus cannot be used; tests fail with this sentence instead of skipping. */
export class CorpusMissingError extends Error {
  override name = 'CorpusMissingError';
}

function readJson(file: string): any {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CorpusMissingError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

function parseAddress(value: unknown): bigint | undefined {
  if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
  if (typeof value === 'bigint') return value;
  if (typeof value === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(value.trim())) return BigInt(value.trim());
  return undefined;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function readMakeCorpusCase(dir: string): ExpectedCase {
  const exp = readJson(path.join(dir, 'expected.json'));
  const meta = existsSync(path.join(dir, 'meta')) ? readJson(path.join(dir, 'meta')) : {};
  const hints = (meta.tool_hints ?? {}) as { sysroot?: string; debug_dirs?: string[] };
  const siginfo = meta.siginfo as { si_code?: number; si_addr?: string } | null | undefined;
  const signal: ExpectedCase['signal'] = { number: Number(exp.signal) };
  if (siginfo && typeof siginfo.si_code === 'number') {
    signal.code = siginfo.si_code;
    // A SIGSEGV's si_addr is the faulting address; for a SIGABRT (si_code SI_TKILL) that slot
    // holds the sender's pid, which the snapshot has no reason to report as an address.
    if (signal.code > 0) signal.address = parseAddress(siginfo.si_addr);
  }
  const name = String(exp.case ?? path.basename(dir));
  const result: ExpectedCase = {
    id: `x86_64/${name}`,
    name,
    dialect: 'make-corpus',
    dir,
    exe: path.join(dir, 'exe'),
    core: path.join(dir, 'core'),
    arch: exp.arch === 'aarch64' ? 'aarch64' : 'x86_64',
    debugDirs: hints.debug_dirs ?? [],
    signal,
    threadCount: Number(exp.threads),
    crashTid: Number(exp.crash_tid),
    crash: {
      dialect: 'make-corpus',
      match: exp.crash_thread?.match === 'after-top' ? 'after-top' : 'prefix',
      frames: (exp.crash_thread?.frames ?? []) as FrameToken[],
    },
  };
  if (hints.sysroot) result.sysroot = hints.sysroot;
  if (typeof exp.other_threads_contain === 'string') result.otherThreadsContain = exp.other_threads_contain;
  if (exp.thread_frames && typeof exp.thread_frames === 'object') {
    result.threadFrames = {};
    for (const [tid, spec] of Object.entries(exp.thread_frames as Record<string, { match?: string; frames?: FrameToken[] }>)) {
      result.threadFrames[tid] = {
        dialect: 'make-corpus',
        match: spec.match === 'after-top' ? 'after-top' : 'prefix',
        frames: spec.frames ?? [],
      };
    }
  }
  if (exp.thread_depths) {
    result.threadDepths = { fn: String(exp.thread_depths.fn), byTid: exp.thread_depths.by_tid ?? {} };
  }
  return result;
}

function readArm64Case(dir: string, sysroot: string): ExpectedCase {
  const exp = readJson(path.join(dir, 'expected.json'));
  const notesFile = path.join(dir, 'notes.json');
  const notes = existsSync(notesFile) ? readJson(notesFile) : undefined;
  const name = String(exp.case ?? path.basename(dir));
  const signal: ExpectedCase['signal'] = { number: Number(exp.signal?.si_signo) };
  if (typeof exp.signal?.si_code === 'number') signal.code = exp.signal.si_code;
  const address = parseAddress(exp.signal?.si_addr);
  if (address !== undefined) signal.address = address;
  const crashing = exp.crashing_thread ?? {};
  const crash: CrashSpec = {
    dialect: 'make-arm64-cores',
    frames: (crashing.frames ?? []) as string[],
    inlined: (crashing.inlined ?? []) as string[],
  };
  if (Array.isArray(crashing.frames_without_libc_debuginfo)) {
    crash.withoutLibcDebuginfo = crashing.frames_without_libc_debuginfo as string[];
  }
  const result: ExpectedCase = {
    id: `arm64/${name}`,
    name,
    dialect: 'make-arm64-cores',
    dir,
    exe: path.join(dir, 'exe'),
    core: path.join(dir, 'core'),
    arch: 'aarch64',
    sysroot,
    debugDirs: [],
    signal,
    threadCount: Number(exp.thread_count),
    crash,
  };
  // The kernel writes the crashing thread's NT_PRSTATUS first; notes.json decoded them in order.
  const firstTid = notes?.threads?.[0]?.tid;
  if (typeof firstTid === 'number') result.crashTid = firstTid;
  if (exp.other_threads) {
    result.otherThreadsInOrder = {
      count: Number(exp.other_threads.count),
      names: (exp.other_threads.each_contains_in_order ?? []) as string[],
    };
  }
  return result;
}

/**
 * Every case in the corpus: make-corpus.sh's under `corpus/`, test/cases/make-cases.sh's under
 * `cases/` (same dialect), make-arm64-cores.sh's under `arm64/corpus/`. Throws [[CorpusMissingError]] (never returns an empty list) when the corpus
 * has not been built, so a missing corpus fails the tests loudly.
 */
export function listCases(root: string = corpusDir()): ExpectedCase[] {
  const cases: ExpectedCase[] = [];
  const x86 = path.join(root, 'corpus');
  const arm64 = path.join(root, 'arm64', 'corpus');
  if (!isDir(x86) && !isDir(arm64)) {
    throw new CorpusMissingError(
      `no corpus at ${root} (looked for ${x86} and ${arm64}); build it with scripts/corpus.sh ` +
        'or point CORESNAP_CORPUS_DIR at one',
    );
  }
  if (isDir(x86)) {
    for (const entry of readdirSync(x86).sort()) {
      const dir = path.join(x86, entry);
      if (existsSync(path.join(dir, 'expected.json'))) cases.push(readMakeCorpusCase(dir));
    }
  }
  // test/cases/make-cases.sh writes more cases in the make-corpus.sh dialect beside the corpus.
  const extra = path.join(root, 'cases');
  if (isDir(extra)) {
    for (const entry of readdirSync(extra).sort()) {
      const dir = path.join(extra, entry);
      // live-hang is a process to attach to, not a core: its test lives elsewhere.
      if (existsSync(path.join(dir, 'expected.json')) && existsSync(path.join(dir, 'core'))) {
        const c = readMakeCorpusCase(dir);
        cases.push({ ...c, id: `cases/${c.name}` });
      }
    }
  }
  if (isDir(arm64)) {
    const sysroot = path.join(arm64, 'sysroot');
    for (const entry of readdirSync(arm64).sort()) {
      const dir = path.join(arm64, entry);
      if (existsSync(path.join(dir, 'expected.json'))) cases.push(readArm64Case(dir, sysroot));
    }
  }
  if (cases.length === 0) throw new CorpusMissingError(`the corpus at ${root} holds no case with an expected.json`);
  return cases;
}

// ---------------------------------------------------------------- names

/** Drops balanced runs of `open`..`close` (template arguments), as check.py's strip_balanced. */
function stripBalanced(s: string, open: string, close: string): string {
  let out = '';
  let depth = 0;
  for (const ch of s) {
    if (ch === open) depth += 1;
    else if (ch === close && depth) depth -= 1;
    else if (depth === 0) out += ch;
  }
  return out;
}

/** check.py's `norm`: one comparable name per frame, `??` for an unknown one. */
export function normCheckPy(name: string | undefined | null): string {
  if (!name || name === '??' || name === '???' || /^0x[0-9a-f]+$/.test(name)) return '??';
  let n = name.trim();
  if (n.includes('`')) n = n.slice(n.indexOf('`') + 1);
  n = n.replace(/@@?[A-Z_]+[0-9.]*$/, '');
  n = n.replaceAll('(anonymous namespace)', '{anon}').replaceAll('operator()', 'operator{call}');
  n = n.replaceAll('{lambda(', '{lambda{');
  n = n.replace(/ \[clone [^\]]*\]/g, '');
  let depth = 0;
  for (let i = 0; i < n.length; i++) {
    const ch = n[i];
    if (ch === '<') depth += 1;
    else if (ch === '>' && depth) depth -= 1;
    else if (ch === '(' && depth === 0 && i > 0) {
      n = n.slice(0, i);
      break;
    }
  }
  n = stripBalanced(n, '<', '>');
  n = n.replace(/\[[0-9a-f]{16}\]/g, '');
  n = n.replace(/::h[0-9a-f]{16}$/, '');
  for (;;) {
    const m = n.replace(/\.(cold|constprop\.\d+|isra\.\d+|part\.\d+|lto_priv\.\d+|abi0|localalias)$/, '');
    if (m === n) break;
    n = m;
  }
  n = n.replace(/^__GI_/, '').trim();
  return n || '??';
}

/** cases.py's `norm`: drops a trailing parameter list and `__GI_` / `__libc_` prefixes. */
export function normCasesPy(name: string | undefined | null): string | null {
  if (name === undefined || name === null) return null;
  let n = name.trim();
  if (n.endsWith(')')) {
    let depth = 0;
    for (let i = n.length - 1; i >= 0; i--) {
      if (n[i] === ')') depth += 1;
      else if (n[i] === '(') {
        depth -= 1;
        if (depth === 0) {
          if (i > 0) n = n.slice(0, i);
          break;
        }
      }
    }
  }
  for (const prefix of ['__GI_', '__libc_']) {
    if (n.startsWith(prefix) && n !== '__libc_start_call_main' && n !== '__libc_start_main_impl') {
      n = n.slice(prefix.length);
    }
  }
  return n;
}

/** `A<B<int> >` and `A<B<int>>` are one name: demanglers and DWARF differ only in that space. */
function sameTemplateSpelling(a: string, b: string): boolean {
  const squeeze = (s: string) => s.replace(/>\s+(?=>)/g, '>').replace(/,\s+/g, ', ');
  return squeeze(a) === squeeze(b);
}

function isSignalFrame(frame: SnapshotFrame): boolean {
  return frame.kind === 'signal';
}

// ---------------------------------------------------------------- make-corpus.sh frames

const ANY = Symbol('any');
type Token = FrameToken | typeof ANY;

const SIGNAL_NAMES = new Set(['<signal>', '__restore_rt', 'runtime.sigreturn', '??']);

function expand(frames: FrameToken[]): Token[] {
  const tokens: Token[] = [];
  for (const f of frames) {
    if (f.any) tokens.push(ANY);
    else for (let i = 0; i < (f.repeat ?? 1); i++) tokens.push(f);
  }
  return tokens;
}

function nameEq(toolFn: string, exp: FrameToken): boolean {
  if (exp.fn === '<signal>') return SIGNAL_NAMES.has(toolFn);
  const want = normCheckPy(exp.fn);
  if (toolFn === want) return true;
  // check.py accepts an unqualified name for a qualified one (DW_AT_name without its scope).
  return want.includes('::') && toolFn === want.split('::').pop();
}

interface Progress {
  ok: boolean;
  /** How many tokens matched before the walk got stuck. */
  reached: number;
  /** Expected inline frames that were absent (allowed by check.py, counted). */
  missingInlines: number;
}

/** check.py's match_from: tokens against names from `p`, contiguously; ANY = any run. */
function matchFrom(names: string[], p: number, toks: Token[], j = 0): Progress {
  let missing = 0;
  while (j < toks.length) {
    const t = toks[j]!;
    if (t === ANY) {
      let best: Progress = { ok: false, reached: j, missingInlines: missing };
      for (let q = p; q <= names.length; q++) {
        const r = matchFrom(names, q, toks, j + 1);
        if (r.ok) return { ok: true, reached: r.reached, missingInlines: missing + r.missingInlines };
        if (r.reached > best.reached) best = { ok: false, reached: r.reached, missingInlines: missing + r.missingInlines };
      }
      return best;
    }
    if (p < names.length && nameEq(names[p]!, t)) {
      p += 1;
      j += 1;
      continue;
    }
    if (t.inline) {
      missing += 1;
      j += 1;
      continue;
    }
    return { ok: false, reached: j, missingInlines: missing };
  }
  return { ok: true, reached: j, missingInlines: missing };
}

/** The names check.py would compare for these frames (signal trampolines become `<signal>`). */
export function checkPyNames(frames: SnapshotFrame[]): string[] {
  return frames.map((f) => (isSignalFrame(f) ? '<signal>' : normCheckPy(f.funcName)));
}

export interface FrameVerdict {
  ok: boolean;
  /** Empty when ok; otherwise one sentence saying what was expected and what was seen. */
  why: string;
  /** Inline frames the case expects that the snapshot did not show (check.py tolerates them). */
  missingInlines: number;
}

function describeToken(t: Token | undefined): string {
  if (t === undefined) return '(end)';
  if (t === ANY) return '*';
  return t.inline ? `${t.fn} [inline]` : String(t.fn);
}

function summarizeNames(names: (string | null)[]): string {
  const shown = names.length > 16 ? [...names.slice(0, 12), `... ${names.length - 15} more ...`, ...names.slice(-3)] : names;
  return `[${shown.map((n) => n ?? '?').join(' <- ')}]`;
}

function matchMakeCorpus(spec: Extract<CrashSpec, { dialect: 'make-corpus' }>, frames: SnapshotFrame[]): FrameVerdict {
  const names = checkPyNames(frames);
  const toks = expand(spec.frames);
  const first = toks[0];
  let starts = [0];
  if (spec.match !== 'prefix' && first !== undefined && first !== ANY) {
    const found = names.flatMap((n, i) => (nameEq(n, first) ? [i] : []));
    if (found.length) starts = found;
  }
  let best: Progress = { ok: false, reached: 0, missingInlines: 0 };
  for (const s of starts) {
    const r = matchFrom(names, s, toks);
    if (r.ok) {
      best = r;
      break;
    }
    if (r.reached > best.reached) best = r;
  }
  if (best.ok) return { ok: true, why: '', missingInlines: best.missingInlines };
  return {
    ok: false,
    missingInlines: best.missingInlines,
    why:
      `crashing thread ${summarizeNames(names)} does not match (${spec.match}) the expected ` +
      `[${spec.frames.map((f) => describeToken(f.any ? ANY : f) + (f.repeat ? ` x${f.repeat}` : '')).join(' <- ')}]: ` +
      `${best.reached}/${toks.length} frames matched, stuck at ${describeToken(toks[best.reached])}`,
  };
}

// ---------------------------------------------------------------- make-arm64-cores.sh frames

/** The names cases.py would compare (`null` for an unnamed frame). */
export function casesPyNames(frames: SnapshotFrame[]): (string | null)[] {
  return frames.map((f) => (isSignalFrame(f) ? '<signal handler called>' : normCasesPy(f.funcName ?? null)));
}

/** cases.py's in_order: `want` is a contiguous run of `seq`, `?` matching any one frame. */
function inOrder(seq: (string | null)[], want: string[]): boolean {
  for (let i = 0; i + want.length <= seq.length; i++) {
    if (want.every((w, k) => w === '?' || (seq[i + k] != null && sameTemplateSpelling(seq[i + k]!, w)))) return true;
  }
  return false;
}

/** cases.py's subseq: `want` appears in `seq` in order, not necessarily contiguously. */
export function inOrderSubsequence(seq: (string | null)[], want: string[]): boolean {
  let i = 0;
  for (const w of want) {
    while (i < seq.length && !(seq[i] != null && sameTemplateSpelling(seq[i]!, w))) i++;
    if (i >= seq.length) return false;
    i++;
  }
  return true;
}

function matchArm64(spec: Extract<CrashSpec, { dialect: 'make-arm64-cores' }>, frames: SnapshotFrame[]): FrameVerdict {
  const names = casesPyNames(frames);
  const problems: string[] = [];
  let missingInlines = 0;
  if (!inOrder(names, spec.frames)) {
    const onlyNoDebug = spec.withoutLibcDebuginfo && inOrder(names, spec.withoutLibcDebuginfo);
    problems.push(
      `crashing thread ${summarizeNames(names)} does not contain [${spec.frames.join(' <- ')}] contiguously` +
        (onlyNoDebug ? ` (it does contain frames_without_libc_debuginfo [${spec.withoutLibcDebuginfo!.join(' <- ')}])` : ''),
    );
  }
  for (const inl of spec.inlined) {
    if (!frames.some((f, i) => f.inlined === true && names[i] != null && sameTemplateSpelling(names[i]!, inl))) {
      missingInlines += 1;
      problems.push(`${inl} is not reported as an inlined frame`);
    }
  }
  return { ok: problems.length === 0, why: problems.join('; '), missingInlines };
}

/**
 * Judges a crashing thread's frames (innermost first, as the snapshot lists them) against a
 * case's expectation, with the semantics of that dialect's checker.
 */
export function matchFrames(expected: ExpectedCase | CrashSpec, frames: SnapshotFrame[]): FrameVerdict {
  const spec = 'crash' in expected ? expected.crash : expected;
  return spec.dialect === 'make-corpus' ? matchMakeCorpus(spec, frames) : matchArm64(spec, frames);
}

// ---------------------------------------------------------------- whole snapshot

/** One named fact about a snapshot, true or not, with what was seen when not. */
export interface Fact {
  what: string;
  ok: boolean;
  why: string;
}

/** The crashing thread's tid as the case knows it, else the snapshot's own `mainThread`. */
export function crashThreadKey(expected: ExpectedCase, snapshot: Snapshot): string {
  return expected.crashTid !== undefined ? String(expected.crashTid) : String(snapshot.mainThread);
}

/**
 * Every fact the case promises, checked on the snapshot: the crashing thread and its frames,
 * the thread count, the signal, the other threads, and per-thread depths. Each fact is reported
 * separately so one failing test names every difference at once.
 */
export function checkSnapshot(expected: ExpectedCase, snapshot: Snapshot): Fact[] {
  const facts: Fact[] = [];
  const fact = (what: string, ok: boolean, why: string) => facts.push({ what, ok, why: ok ? '' : why });
  const threads = snapshot.threads && typeof snapshot.threads === 'object' ? snapshot.threads : {};
  const tids = Object.keys(threads);
  const crashKey = crashThreadKey(expected, snapshot);
  const crash = threads[crashKey];

  if (expected.crashTid !== undefined) {
    fact(
      'mainThread is the crashing thread',
      String(snapshot.mainThread) === crashKey,
      `mainThread is ${JSON.stringify(snapshot.mainThread)}, the crashing thread is ${crashKey}`,
    );
  }
  fact('the crashing thread is present', crash !== undefined, `no thread ${crashKey} among [${tids.join(', ')}]`);
  if (crash) {
    const stack = Array.isArray(crash.stack) ? crash.stack : [];
    const verdict = matchFrames(expected, stack);
    fact('crashing thread frames', verdict.ok, verdict.why);
    if (expected.dialect === 'make-corpus') {
      fact(
        'expected inline frames are shown',
        verdict.missingInlines === 0,
        `${verdict.missingInlines} inlined frame(s) of the expectation are missing from the crashing thread`,
      );
    }
  }
  fact('thread count', tids.length === expected.threadCount, `${tids.length} threads, expected ${expected.threadCount}`);

  const signal = snapshot.signal;
  fact('signal number', signal?.number === expected.signal.number, `signal ${JSON.stringify(signal)}, expected number ${expected.signal.number}`);
  if (expected.signal.code !== undefined) {
    fact('signal code', signal?.code === expected.signal.code, `signal code ${signal?.code}, expected ${expected.signal.code}`);
  }
  if (expected.signal.address !== undefined) {
    const seen = parseAddress(signal?.address);
    fact(
      'signal address',
      seen === expected.signal.address,
      `signal address ${JSON.stringify(signal?.address)}, expected 0x${expected.signal.address.toString(16)}`,
    );
  }

  const others = tids.filter((tid) => tid !== crashKey);
  if (expected.otherThreadsContain) {
    const want: FrameToken = { fn: expected.otherThreadsContain };
    const lacking = others.filter((tid) => !checkPyNames(threads[tid]?.stack ?? []).some((n) => nameEq(n, want)));
    fact(
      `every other thread contains ${expected.otherThreadsContain}`,
      lacking.length === 0 && others.length === expected.threadCount - 1,
      `${others.length - lacking.length}/${expected.threadCount - 1} other threads contain it; lacking: ` +
        lacking.slice(0, 5).map((tid) => `${tid} ${summarizeNames(checkPyNames(threads[tid]?.stack ?? []))}`).join(', '),
    );
  }
  if (expected.otherThreadsInOrder) {
    const { count, names } = expected.otherThreadsInOrder;
    fact('other thread count', others.length === count, `${others.length} other threads, expected ${count}`);
    const lacking = others.filter((tid) => !inOrderSubsequence(casesPyNames(threads[tid]?.stack ?? []), names));
    fact(
      `every other thread contains ${names.join(' < ')} in order`,
      lacking.length === 0,
      `lacking: ${lacking.slice(0, 5).map((tid) => `${tid} ${summarizeNames(casesPyNames(threads[tid]?.stack ?? []))}`).join(', ')}`,
    );
  }
  for (const [tid, spec] of Object.entries(expected.threadFrames ?? {})) {
    const thread = threads[tid];
    const verdict = thread ? matchFrames(spec, thread.stack ?? []) : { ok: false, why: `no thread ${tid}` };
    fact(`thread ${tid} frames`, verdict.ok, verdict.why.replace(/^crashing thread/, `thread ${tid}`));
  }
  if (expected.threadDepths) {
    const { fn, byTid } = expected.threadDepths;
    const wrong: string[] = [];
    for (const [tid, depth] of Object.entries(byTid)) {
      const seen = checkPyNames(threads[tid]?.stack ?? []).filter((n) => n === fn).length;
      if (seen !== depth) wrong.push(`${tid}: ${seen} != ${depth}`);
    }
    const total = Object.keys(byTid).length;
    fact(
      `${fn} depth of every thread`,
      wrong.length === 0,
      `${total - wrong.length}/${total} threads have the right depth; wrong: ${wrong.slice(0, 8).join(', ')}${wrong.length > 8 ? ', ...' : ''}`,
    );
  }
  return facts;
}
