/**
 * The native boundary: the addon loads and answers, engine errors arrive as typed JS errors
 * (never a crash of Node), and bin/ finds the native executables or says where it looked.
 */

import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import test from 'ava';

import { describeError, ExitCode } from '../../ts/cli/errors.js';
import {
  engineVersion,
  findNativeTool,
  loadNative,
  NativeError,
  NativeNotFoundError,
  packageRoot,
  platformId,
  snapshotCore,
  snapshotCoreSync,
} from '../../ts/native/index.js';
import { corpusDir, listCases } from '../helpers/corpus.js';
import { runBin } from '../helpers/run.js';

function workspaceVersion(): string {
  const cargo = readFileSync(path.join(packageRoot, 'Cargo.toml'), 'utf8');
  const match = /\[workspace\.package\][^[]*?version\s*=\s*"([^"]+)"/.exec(cargo);
  if (!match?.[1]) throw new Error('no [workspace.package] version in Cargo.toml');
  return match[1];
}

test('the addon loads and reports the workspace version', (t) => {
  t.is(typeof loadNative().snapshotCore, 'function');
  t.is(engineVersion(), workspaceVersion());
  t.regex(platformId(), /^linux-(x64|arm64)-(gnu|musl)$/);
});

test('a core that does not exist is a NativeError with a sentence (sync)', (t) => {
  const missing = path.join(os.tmpdir(), 'coresnap-no-such-dir', 'core');
  const err = t.throws(() => snapshotCoreSync({ core: missing }), { instanceOf: NativeError });
  t.is(err?.code, 'CORESNAP_ENGINE');
  t.true((err?.message.length ?? 0) > 10, err?.message);
  t.notRegex(err?.message ?? '', /^\[CORESNAP/);
  t.is(describeError(err).exitCode, ExitCode.Input);
});

test('a core that does not exist is a NativeError with a sentence (async)', async (t) => {
  const err = await t.throwsAsync(snapshotCore({ core: '/nonexistent/coresnap/core' }), { instanceOf: NativeError });
  t.is(err?.code, 'CORESNAP_ENGINE');
});

test('a malformed attribute is refused before the engine runs', (t) => {
  const err = t.throws(
    () => snapshotCoreSync({ core: '/nonexistent', attributes: { nested: { a: 1 } as unknown as string } }),
    { instanceOf: NativeError },
  );
  t.is(err?.code, 'CORESNAP_OPTIONS');
  t.regex(err?.message ?? '', /attribute "nested"/);
  t.is(describeError(err).exitCode, ExitCode.Usage);
});

test('the addon snapshots a corpus core (c-segv-O2)', async (t) => {
  const expected = listCases().find((c) => c.id === 'x86_64/c-segv-O2');
  if (!expected) return t.fail(`no x86_64/c-segv-O2 in ${corpusDir()}`);
  const snapshot = await snapshotCore({ core: expected.core, executable: expected.exe });
  t.is(snapshot.agent, 'coresnap');
  t.is(snapshot.mainThread, String(expected.crashTid));
  t.is(Object.keys(snapshot.threads).length, expected.threadCount);
  t.true((snapshot.threads[snapshot.mainThread]?.stack.length ?? 0) > 0);
});

test('the addon returns a 201-thread snapshot whole, sync and async (many-threads)', async (t) => {
  const expected = listCases().find((c) => c.id === 'x86_64/many-threads');
  if (!expected) return t.fail(`no x86_64/many-threads in ${corpusDir()}`);
  const options = { core: expected.core, executable: expected.exe, attributes: { build: '7', 'team.name': 'core' } };
  const [sync, async] = [snapshotCoreSync(options), await snapshotCore(options)];
  for (const snapshot of [sync, async]) {
    t.is(Object.keys(snapshot.threads).length, 201);
    t.is(snapshot.attributes?.build, '7');
    t.is(snapshot.attributes?.['team.name'], 'core');
  }
  const frames = (s: typeof sync) => Object.values(s.threads).reduce((n, thread) => n + thread.stack.length, 0);
  // 200 threads at depths 1..200 alone hold 20,100 recurse frames.
  t.true(frames(sync) > 20_100, `${frames(sync)} frames`);
  t.is(frames(async), frames(sync));
});

test('findNativeTool finds ptrace and bt in this checkout', (t) => {
  for (const tool of ['ptrace', 'bt'] as const) {
    const found = findNativeTool(tool);
    t.true(path.isAbsolute(found));
    t.is(path.basename(found), tool);
  }
});

test('findNativeTool honours CORESNAP_NATIVE_DIR and lists what it tried', (t) => {
  const saved = process.env.CORESNAP_NATIVE_DIR;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coresnap-native-'));
  try {
    copyFileSync(findNativeTool('bt'), path.join(dir, 'bt'));
    process.env.CORESNAP_NATIVE_DIR = dir;
    t.is(findNativeTool('bt'), path.join(dir, 'bt'));
  } finally {
    if (saved === undefined) delete process.env.CORESNAP_NATIVE_DIR;
    else process.env.CORESNAP_NATIVE_DIR = saved;
    rmSync(dir, { recursive: true, force: true });
  }
  const err = new NativeNotFoundError('the native `bt` executable', [{ where: '/x/bt', why: 'no such file' }]);
  t.regex(err.message, /\/x\/bt: no such file/);
  t.is(describeError(err).exitCode, ExitCode.NativeMissing);
});

test('bin/ptrace reaches the native executable', async (t) => {
  const run = await runBin('ptrace', ['--help'], { timeoutMs: 30_000 });
  // The native binary decides what --help prints; the shell wrapper must not be the one failing.
  t.not(run.code, 127, run.stderr);
  t.notRegex(run.stderr, /cannot find the native ptrace/);
});

test('bin/bt outside a build says where it looked and exits 127', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coresnap-bin-'));
  try {
    mkdirSync(path.join(dir, 'bin'));
    for (const file of ['bt', 'native-exec.sh']) copyFileSync(path.join(packageRoot, 'bin', file), path.join(dir, 'bin', file));
    const { execFile } = await import('node:child_process');
    const env = { ...process.env };
    delete env.CORESNAP_NATIVE_DIR;
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) =>
      execFile('sh', [path.join(dir, 'bin', 'bt'), '--json'], { env }, (err, _stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
      ),
    );
    t.is(result.code, 127);
    t.regex(result.stderr, /cannot find the native bt executable/);
    t.true(result.stderr.includes(path.join(dir, 'target', 'release', 'bt')), result.stderr);
    t.true(result.stderr.includes(`@coresnap/${platformId()}`), result.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the npm package carries every command of bin/ under its name, the compiled code and the web console', async (t) => {
  const manifest = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  const { execFileSync } = await import('node:child_process');
  const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: packageRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as Array<{
    files: Array<{ path: string }>;
  }>;
  const files = new Set(packed[0]!.files.map((f) => f.path));
  // One executable per command (the brief's bin/), each installed under its own name.
  for (const command of ['coresnap', 'coresnapd', 'ptrace', 'bt', 'coroner', 'morgue']) {
    t.is(manifest.bin[command], `bin/${command}`, `package.json installs ${command}`);
    t.true(files.has(`bin/${command}`), `the package holds bin/${command}`);
  }
  for (const needed of ['dist/ts/cli/coresnap.js', 'dist/ts/server/server.js', 'dist/web/index.html', 'dist/web/app.js', 'README.md']) {
    t.true(files.has(needed), `the package holds ${needed}`);
  }
});
