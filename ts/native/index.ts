/**
 * The one door to native code: the napi addon (`coresnap.<platform>.node`, built from
 * crates/node) and the native `ptrace` / `bt` executables (built from crates/cli).
 *
 * Both are looked for in the same order, and the first that works wins:
 *   1. `$CORESNAP_NATIVE_DIR` (a folder holding the addon and/or the executables);
 *   2. a local build in this checkout (the addon at the package root, as `npm run build:native`
 *      leaves it; the executables in `target/release/`);
 *   3. the package's own `native/` folder;
 *   4. the per-platform npm package `@coresnap/linux-<arch>-<libc>`.
 * When nothing works, the error lists every place tried and why each failed, so a user can tell
 * a missing build from a broken one.
 *
 * The addon is loaded on first use, not on import: code that only spawns `ptrace` never needs it.
 */

import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Snapshot, SnapshotOptions } from './types.js';

export type * from './types.js';

const require = createRequire(import.meta.url);

/** The raw functions crates/node registers. */
interface NativeBinding {
  snapshotCore(options: SnapshotOptions): Promise<Snapshot>;
  snapshotCoreSync(options: SnapshotOptions): Snapshot;
  engineVersion(): string;
}

/** What the engine said when it refused, and what kind of refusal it was. */
export type NativeErrorCode = 'CORESNAP_OPTIONS' | 'CORESNAP_ENGINE' | 'CORESNAP_PANIC';

/** An error thrown by the engine (bad options, unreadable input, or a caught panic). */
export class NativeError extends Error {
  override name = 'NativeError';
  constructor(
    readonly code: NativeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** One place a native file was looked for, and why it was not used. */
export interface Attempt {
  where: string;
  why: string;
}

/** The addon or an executable could not be found or loaded anywhere. */
export class NativeNotFoundError extends Error {
  override name = 'NativeNotFoundError';
  constructor(
    readonly what: string,
    readonly attempts: readonly Attempt[],
  ) {
    super(
      `could not find ${what} for linux-${currentArch()}-${currentLibc()}; tried:\n` +
        attempts.map((a) => `  ${a.where}: ${a.why}`).join('\n') +
        '\nbuild it with `npm run build:native`, or install the matching @coresnap/linux-* package',
    );
  }
}

/** The folder holding coresnap's package.json (the checkout, or node_modules/coresnap). */
export const packageRoot: string = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'coresnap') {
          return dir;
        }
      } catch {
        // an unreadable package.json on the way up is not ours; keep climbing
      }
    }
    if (path.dirname(dir) === dir) {
      throw new Error(`no package.json named "coresnap" above ${start}`);
    }
  }
}

/** coresnap's version, from its package.json ('unknown' when that cannot be read). */
export function coresnapVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** `x64` or `arm64`, as npm and napi-rs name them. */
export function currentArch(): string {
  return process.arch;
}

let libcCache: 'gnu' | 'musl' | undefined;

/** `gnu` or `musl`: Node's report names the glibc it runs on, and names none under musl. */
export function currentLibc(): 'gnu' | 'musl' {
  if (libcCache === undefined) {
    // Skipping the network part keeps getReport() from scanning interfaces (Node 20.13+).
    const report = process.report as NodeJS.ProcessReport & { excludeNetwork?: boolean };
    const excludeNetwork = report.excludeNetwork;
    report.excludeNetwork = true;
    const header = (report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
    report.excludeNetwork = excludeNetwork;
    libcCache = header?.glibcVersionRuntime ? 'gnu' : 'musl';
  }
  return libcCache;
}

/** `linux-x64-gnu` and the like: the napi-rs platform suffix and the npm package's last word. */
export function platformId(): string {
  return `linux-${currentArch()}-${currentLibc()}`;
}

/** The per-platform npm package for this machine. */
export function platformPackage(): string {
  return `@coresnap/${platformId()}`;
}

function addonFileName(): string {
  return `coresnap.${platformId()}.node`;
}

function reason(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && err.code === 'MODULE_NOT_FOUND') {
    return 'not installed';
  }
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}

/** Where the platform package lives, or why it cannot be found. */
function platformPackageDir(): { dir?: string; why?: string } {
  try {
    return { dir: path.dirname(require.resolve(`${platformPackage()}/package.json`, { paths: [packageRoot] })) };
  } catch (err) {
    return { why: reason(err) };
  }
}

let binding: NativeBinding | undefined;

/** Loads the addon (once), or throws a [[NativeNotFoundError]] naming every place tried. */
export function loadNative(): NativeBinding {
  if (binding) return binding;
  if (process.platform !== 'linux') {
    throw new NativeNotFoundError('the coresnap addon', [
      { where: process.platform, why: 'coresnap snapshots Linux processes and runs on Linux only' },
    ]);
  }
  const attempts: Attempt[] = [];
  const file = addonFileName();
  const candidates: string[] = [];
  const nativeDir = process.env.CORESNAP_NATIVE_DIR;
  if (nativeDir) candidates.push(path.resolve(nativeDir, file));
  candidates.push(path.join(packageRoot, file), path.join(packageRoot, 'native', file));
  for (const candidate of candidates) {
    if (!existsSync(candidate)) {
      attempts.push({ where: candidate, why: 'no such file' });
      continue;
    }
    try {
      binding = require(candidate) as NativeBinding;
      return binding;
    } catch (err) {
      attempts.push({ where: candidate, why: reason(err) });
    }
  }
  try {
    binding = require(require.resolve(platformPackage(), { paths: [packageRoot] })) as NativeBinding;
    return binding;
  } catch (err) {
    attempts.push({ where: `package ${platformPackage()}`, why: reason(err) });
  }
  throw new NativeNotFoundError(`the coresnap addon (${file})`, attempts);
}

/** The native executables the package ships. */
export type NativeTool = 'ptrace' | 'bt';

/** The absolute path of a native executable, found in the order the module comment gives. */
export function findNativeTool(name: NativeTool): string {
  const attempts: Attempt[] = [];
  const candidates: string[] = [];
  const nativeDir = process.env.CORESNAP_NATIVE_DIR;
  if (nativeDir) candidates.push(path.resolve(nativeDir, name));
  candidates.push(path.join(packageRoot, 'target', 'release', name), path.join(packageRoot, 'native', name));
  const platform = platformPackageDir();
  if (platform.dir) {
    candidates.push(path.join(platform.dir, name));
  } else {
    attempts.push({ where: `package ${platformPackage()}`, why: platform.why ?? 'not installed' });
  }
  for (const candidate of candidates) {
    try {
      if (!statSync(candidate).isFile()) {
        attempts.push({ where: candidate, why: 'not a file' });
        continue;
      }
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      attempts.push({
        where: candidate,
        why: code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not executable' : reason(err),
      });
    }
  }
  // Keep the report in search order: the platform package comes last.
  attempts.sort((a, b) => Number(a.where.startsWith('package ')) - Number(b.where.startsWith('package ')));
  throw new NativeNotFoundError(`the native \`${name}\` executable`, attempts);
}

const CODED = /^\[(CORESNAP_[A-Z]+)\] ([\s\S]*)$/;

/** crates/node prefixes its messages with `[CODE] `; turn that back into a typed error. */
function toNativeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const match = CODED.exec(err.message);
  if (!match) return err;
  return new NativeError(match[1] as NativeErrorCode, match[2] ?? '', { cause: err });
}

/** Makes a snapshot on libuv's thread pool; rejects with a [[NativeError]]. */
export async function snapshotCore(options: SnapshotOptions): Promise<Snapshot> {
  const native = loadNative();
  try {
    return await native.snapshotCore(options);
  } catch (err) {
    throw toNativeError(err);
  }
}

/** Makes a snapshot on the calling thread; throws a [[NativeError]]. */
export function snapshotCoreSync(options: SnapshotOptions): Snapshot {
  const native = loadNative();
  try {
    return native.snapshotCoreSync(options);
  } catch (err) {
    throw toNativeError(err);
  }
}

/** The version of the Rust engine the addon was built from. */
export function engineVersion(): string {
  return loadNative().engineVersion();
}
