// `npm run bench` (engine part): our `bt` and `ptrace` beside gdb and eu-stack on every corpus
// case, measured in the same run, printed as ratios. Times on these machines are noisy, so each
// command runs several times and the median counts; peers that take seconds run fewer times.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const corpusRoot = process.env.CORESNAP_CORPUS_DIR ?? join(process.env.TMPDIR ?? '/tmp', 'coresnap-corpus');

interface Case {
  name: string;
  dir: string;
  core: string;
  exe: string;
  sysroot?: string;
  debugDirs: string[];
  foreign: boolean;
}

interface Measure {
  wallMs: number;
  peakKb: number;
  ok: boolean;
}

function readMeta(dir: string): Record<string, any> {
  for (const name of ['meta', 'meta.json']) {
    const p = join(dir, name);
    if (existsSync(p)) {
      try {
        return JSON.parse(readFileSync(p, 'utf8'));
      } catch {
        return {};
      }
    }
  }
  return {};
}

function listCases(): Case[] {
  const cases: Case[] = [];
  const x86 = join(corpusRoot, 'corpus');
  if (existsSync(x86)) {
    for (const name of readdirSync(x86).sort()) {
      const dir = join(x86, name);
      if (!existsSync(join(dir, 'core'))) continue;
      const meta = readMeta(dir);
      const hints = meta.tool_hints ?? {};
      cases.push({
        name,
        dir,
        core: join(dir, 'core'),
        exe: join(dir, 'exe'),
        sysroot: hints.sysroot,
        debugDirs: hints.debug_dirs ?? [],
        foreign: meta.arch === 'aarch64',
      });
    }
  }
  const arm = join(corpusRoot, 'arm64', 'corpus');
  if (existsSync(arm)) {
    for (const name of readdirSync(arm).sort()) {
      const dir = join(arm, name);
      if (!existsSync(join(dir, 'core'))) continue;
      cases.push({
        name: `arm64/${name}`,
        dir,
        core: join(dir, 'core'),
        exe: join(dir, 'exe'),
        sysroot: join(arm, 'sysroot'),
        debugDirs: [],
        foreign: true,
      });
    }
  }
  return cases;
}

/** Runs a command under /usr/bin/time for its peak RSS; wall time is measured here. */
function measure(argv: string[], timeoutMs: number): Measure {
  const started = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', ...argv], {
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
  });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const lines = (r.stderr ?? '').trim().split('\n');
  const peakKb = Number(lines[lines.length - 1]) || 0;
  return { wallMs, peakKb, ok: r.status === 0 };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function repeat(argv: string[], times: number, timeoutMs: number): Measure {
  const runs: Measure[] = [];
  for (let i = 0; i < times; i++) runs.push(measure(argv, timeoutMs));
  return {
    wallMs: median(runs.map((r) => r.wallMs)),
    peakKb: median(runs.map((r) => r.peakKb)),
    ok: runs.every((r) => r.ok),
  };
}

function geomean(values: number[]): number {
  const v = values.filter((x) => Number.isFinite(x) && x > 0);
  if (v.length === 0) return NaN;
  return Math.exp(v.reduce((a, x) => a + Math.log(x), 0) / v.length);
}

function fmt(x: number, digits = 3): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '   -';
}

function main(): number {
  const bt = join(repo, 'target', 'release', 'bt');
  const ptrace = join(repo, 'target', 'release', 'ptrace');
  if (!existsSync(bt) || !existsSync(ptrace)) {
    console.error(`bench: ${bt} is missing: run npm run build first`);
    return 1;
  }
  const cases = listCases();
  if (cases.length === 0) {
    console.error(`bench: no corpus under ${corpusRoot}: run scripts/corpus.sh first`);
    return 1;
  }
  const reps = Number(process.env.BENCH_REPS ?? 5);
  const out = mkdtempSync(join(tmpdir(), 'coresnap-bench-'));
  const rows: Array<{ name: string; ours: Measure; ptrace: Measure; eu?: Measure; gdb?: Measure }> = [];
  for (const c of cases) {
    const engineArgs = ['--core', c.core, c.exe];
    if (c.sysroot) engineArgs.push('--sysroot', c.sysroot);
    for (const d of c.debugDirs) engineArgs.push('--debug-dir', d);
    const ours = repeat([bt, ...engineArgs], reps, 120_000);
    const pt = repeat([ptrace, ...engineArgs, '-o', join(out, 'snap.json')], reps, 120_000);
    // eu-stack cannot take a sysroot: it is compared on host-architecture cases only.
    const eu = c.foreign ? undefined : repeat(['eu-stack', '-i', '-s', '-n', '0', '--core', c.core, '-e', c.exe], reps, 300_000);
    const gdbArgs = ['gdb', '-batch', '-nx', '-iex', 'set auto-load no'];
    if (c.sysroot) gdbArgs.push('-ex', `set sysroot ${c.sysroot}`);
    if (c.debugDirs.length) gdbArgs.push('-ex', `set debug-file-directory ${c.debugDirs.join(':')}`);
    gdbArgs.push('-ex', 'thread apply all bt', c.exe, c.core);
    const gdbReps = process.env.BENCH_GDB_REPS ? Number(process.env.BENCH_GDB_REPS) : 1;
    const gdb = c.foreign ? undefined : repeat(gdbArgs, gdbReps, 600_000);
    rows.push({ name: c.name, ours, ptrace: pt, eu, gdb });
    console.error(`bench: ${c.name} done`);
  }
  rmSync(out, { recursive: true, force: true });

  const header = ['case', 'bt ms', 'bt MB', 'ptrace ms', 'eu-stack ms', 'eu MB', 'gdb ms', 'bt/eu time', 'bt/eu mem', 'bt/gdb time'];
  console.log(header.map((h, i) => (i === 0 ? h.padEnd(24) : h.padStart(12))).join(''));
  const timeVsEu: number[] = [];
  const memVsEu: number[] = [];
  const timeVsGdb: number[] = [];
  for (const r of rows) {
    const tEu = r.eu ? r.ours.wallMs / r.eu.wallMs : NaN;
    const mEu = r.eu ? r.ours.peakKb / r.eu.peakKb : NaN;
    const tGdb = r.gdb ? r.ours.wallMs / r.gdb.wallMs : NaN;
    if (r.eu) {
      timeVsEu.push(tEu);
      memVsEu.push(mEu);
    }
    if (r.gdb) timeVsGdb.push(tGdb);
    const cells = [
      r.name + (r.ours.ok ? '' : ' (bt failed)'),
      fmt(r.ours.wallMs, 1),
      fmt(r.ours.peakKb / 1024, 1),
      fmt(r.ptrace.wallMs, 1),
      r.eu ? fmt(r.eu.wallMs, 1) : '-',
      r.eu ? fmt(r.eu.peakKb / 1024, 1) : '-',
      r.gdb ? fmt(r.gdb.wallMs, 0) : '-',
      fmt(tEu),
      fmt(mEu),
      fmt(tGdb, 4),
    ];
    console.log(cells.map((c, i) => (i === 0 ? c.padEnd(24) : c.padStart(12))).join(''));
  }
  console.log(
    `geometric mean: bt/eu-stack time ${fmt(geomean(timeVsEu))}x (target <= 0.25), ` +
      `bt/eu-stack peak memory ${fmt(geomean(memVsEu))}x (target <= 1), ` +
      `bt/gdb time ${fmt(geomean(timeVsGdb), 4)}x (target <= 0.02)`,
  );
  for (const name of ['many-threads', 'deep-recursion']) {
    const r = rows.find((x) => x.name === name);
    if (r?.eu) console.log(`${name}: bt/eu-stack time ${fmt(r.ours.wallMs / r.eu.wallMs)}x (target <= 0.1)`);
  }
  return rows.every((r) => r.ours.ok && r.ptrace.ok) ? 0 : 1;
}

process.exitCode = main();
