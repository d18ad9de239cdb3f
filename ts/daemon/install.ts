/**
 * Registering the handler with the kernel (`coresnap install`, and coresnapd at start) and
 * giving the machine back (`coresnap uninstall`).
 *
 * install: prepares the archive, creates the unprivileged analysis user when missing, writes
 * `state/handler.conf`, remembers the current core_pattern and core_pipe_limit in the archive's
 * `state/` (unless the current pattern is already coresnap's: then what it remembered stays), and
 * writes `|<handler> --archive=<dir> %P %I %s %c %d %t %e` and a core_pipe_limit that makes the
 * kernel wait for the handler. uninstall: when core_pattern is coresnap's, restores what was
 * remembered (`core` if nothing was). Both are idempotent and say what they did.
 */

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import type { CoresnapConfig } from '../config/coresnap-conf.js';
export { DEFAULT_PIPE_LIMIT } from '../config/coresnap-conf.js';
import { quotaForHandler } from '../config/units.js';
import { packageRoot } from '../native/index.js';
import { ArchiveLayout, type Owner, prepareArchive, writeFileAtomic } from './archive.js';

export const CORE_PATTERN = '/proc/sys/kernel/core_pattern';
export const CORE_PIPE_LIMIT = '/proc/sys/kernel/core_pipe_limit';
/** The kernel keeps at most 127 bytes of core_pattern (CORENAME_MAX_SIZE). */
export const CORE_PATTERN_MAX = 127;
export const HANDLER_NAME = 'coresnap-handler';
const SPECIFIERS = '%P %I %s %c %d %t %e';

/** Where the native handler is, in native-exec.sh's order. */
export function findHandler(env: NodeJS.ProcessEnv = process.env): string {
  const candidates = [
    env.CORESNAP_NATIVE_DIR ? path.join(env.CORESNAP_NATIVE_DIR, HANDLER_NAME) : null,
    path.join(packageRoot, 'target', 'release', HANDLER_NAME),
    path.join(packageRoot, 'native', HANDLER_NAME),
  ].filter((c): c is string => c !== null);
  for (const candidate of candidates) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error(`cannot find the native ${HANDLER_NAME}; tried ${candidates.join(', ')}; build it with \`npm run build\``);
}

export function handlerPattern(handler: string, archive: string): string {
  return `|${handler} --archive=${archive} ${SPECIFIERS}`;
}

/** What a coresnap core_pattern names, or null when the pattern is someone else's. */
export function parseCoresnapPattern(pattern: string): { handler: string; archive: string | null } | null {
  if (!pattern.startsWith('|')) return null;
  const words = pattern.slice(1).trim().split(/\s+/);
  const handler = words[0] ?? '';
  if (path.basename(handler) !== HANDLER_NAME) return null;
  const archiveArg = words.find((w) => w.startsWith('--archive='));
  return { handler, archive: archiveArg ? archiveArg.slice('--archive='.length) : null };
}

export function readCorePattern(): string {
  return fs.readFileSync(CORE_PATTERN, 'utf8').replace(/\n$/, '');
}

export function readPipeLimit(): number {
  return Number(fs.readFileSync(CORE_PIPE_LIMIT, 'utf8').trim());
}

function writeProc(file: string, value: string): void {
  fs.writeFileSync(file, `${value}\n`);
}

/** The unprivileged analysis user, created (system user, no home, no shell) when missing. */
export function ensureUser(name: string, create: boolean): Owner | null {
  if (process.geteuid?.() !== 0 || name === 'root') return null;
  const lookup = (): Owner | null => {
    try {
      const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
      return Number.isInteger(uid) && Number.isInteger(gid) ? { user: name, uid, gid } : null;
    } catch {
      return null;
    }
  };
  const found = lookup();
  if (found || !create) return found;
  execFileSync(
    'useradd',
    ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--comment', 'coresnap crash analysis', name],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return lookup();
}

/** The handler's settings, resolved from coresnap.conf (crates/handler/src/conf.rs reads them). */
export function handlerConfText(config: CoresnapConfig, owner: Owner | null): string {
  const lines = [
    `# Written by coresnap from ${config.file ?? 'the built-in defaults'}; edit coresnap.conf, not this file.`,
    `quota=${config.dumpQuota ? quotaForHandler(config.dumpQuota) : 'none'}`,
    `ignore_limit=${config.ignoreCoreLimit ? 1 : 0}`,
    `env=${config.envAllowlist.join(',')}`,
    `rate_burst=${config.rateBurst}`,
    `rate_window=${config.rateWindowSeconds}`,
  ];
  if (owner) lines.push(`owner=${owner.uid}:${owner.gid}`);
  if (config.captureOnly) lines.push(`only_under=${config.captureOnly}`, `others=${config.captureOthers}`);
  return `${lines.join('\n')}\n`;
}

export function writeHandlerConf(config: CoresnapConfig, owner: Owner | null): void {
  const layout = new ArchiveLayout(config.archivePath);
  writeFileAtomic(layout.handlerConf, handlerConfText(config, owner), 0o600);
}

const PREVIOUS_PATTERN = 'core_pattern.previous';
const PREVIOUS_PIPE_LIMIT = 'core_pipe_limit.previous';

function readSaved(archive: string, name: string): string | null {
  try {
    return fs.readFileSync(path.join(archive, 'state', name), 'utf8').replace(/\n$/, '');
  } catch {
    return null;
  }
}

/** Why another program's pattern, or a boot-time setting, will fight with ours. */
export function otherOwnerWarnings(previous: string): string[] {
  const warnings: string[] = [];
  const owners: [RegExp, string, string][] = [
    [/apport/, 'apport', 'systemctl disable --now apport (or set enabled=0 in /etc/default/apport)'],
    [/systemd-coredump/, 'systemd-coredump', 'remove or override /usr/lib/sysctl.d/50-coredump.conf'],
    [/abrt/, 'abrt', 'systemctl disable --now abrt-ccpp'],
  ];
  for (const [pattern, name, fix] of owners) {
    if (pattern.test(previous)) {
      warnings.push(`core_pattern belonged to ${name} (${previous}); it may put its pattern back: ${fix}`);
    }
  }
  if (warnings.length === 0 && previous.startsWith('|') && !parseCoresnapPattern(previous)) {
    warnings.push(`core_pattern belonged to another program (${previous}); coresnap replaces it, and uninstall gives it back`);
  }
  const sysctlDirs = ['/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d', '/lib/sysctl.d'];
  const files = ['/etc/sysctl.conf'];
  for (const dir of sysctlDirs) {
    try {
      for (const name of fs.readdirSync(dir)) if (name.endsWith('.conf')) files.push(path.join(dir, name));
    } catch {
      // no such folder
    }
  }
  for (const file of files) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const line = text.split('\n').find((l) => /^\s*kernel\.core_pattern\s*=/.test(l));
    if (line) warnings.push(`${file} sets ${line.trim()} at boot; starting coresnapd installs the handler again`);
  }
  try {
    if (/^\s*enabled\s*=\s*1/m.test(fs.readFileSync('/etc/default/apport', 'utf8'))) {
      warnings.push('apport is enabled in /etc/default/apport and rewrites core_pattern when it starts');
    }
  } catch {
    // no apport
  }
  return warnings;
}

export interface InstallResult {
  pattern: string;
  /** False when the same pattern was already installed. */
  changed: boolean;
  /** What uninstall will restore. */
  previous: string;
  pipeLimit: number;
  owner: Owner | null;
  warnings: string[];
}

export interface InstallOptions {
  handler?: string;
  /** Create the analysis user when it is missing (default true). */
  createUser?: boolean;
  /** Overrides dump.pipe_limit. */
  pipeLimit?: number;
}

export function install(config: CoresnapConfig, options: InstallOptions = {}): InstallResult {
  const handler = options.handler ?? findHandler();
  const layout = new ArchiveLayout(config.archivePath);
  const owner = ensureUser(config.user, options.createUser ?? true);
  prepareArchive(layout, owner);
  writeHandlerConf(config, owner);

  const pattern = handlerPattern(handler, config.archivePath);
  if (Buffer.byteLength(pattern) > CORE_PATTERN_MAX) {
    throw new Error(
      `the core_pattern would be ${Buffer.byteLength(pattern)} bytes, and the kernel keeps only ${CORE_PATTERN_MAX}: ${pattern}\n` +
        'install the handler or the archive (archive.path) under a shorter path',
    );
  }
  const current = readCorePattern();
  const currentPipeLimit = readPipeLimit();
  const ours = parseCoresnapPattern(current);
  const warnings: string[] = [];
  let previous: string;
  let previousPipeLimit: string;
  if (ours) {
    // Reinstalling (perhaps from another place or archive): keep what the first install saw.
    const from = ours.archive ?? config.archivePath;
    previous = readSaved(from, PREVIOUS_PATTERN) ?? readSaved(config.archivePath, PREVIOUS_PATTERN) ?? 'core';
    previousPipeLimit = readSaved(from, PREVIOUS_PIPE_LIMIT) ?? readSaved(config.archivePath, PREVIOUS_PIPE_LIMIT) ?? '0';
  } else {
    previous = current;
    previousPipeLimit = String(currentPipeLimit);
    warnings.push(...otherOwnerWarnings(current));
  }
  writeFileAtomic(path.join(layout.state, PREVIOUS_PATTERN), `${previous}\n`, 0o600);
  writeFileAtomic(path.join(layout.state, PREVIOUS_PIPE_LIMIT), `${previousPipeLimit}\n`, 0o600);

  const pipeLimit = Math.max(options.pipeLimit ?? config.pipeLimit, 1);
  const changed = current !== pattern;
  if (changed) writeProc(CORE_PATTERN, pattern);
  if (currentPipeLimit !== pipeLimit) writeProc(CORE_PIPE_LIMIT, String(pipeLimit));
  const now = readCorePattern();
  if (now !== pattern) throw new Error(`the kernel kept core_pattern as "${now}" instead of "${pattern}"`);
  return { pattern, changed, previous, pipeLimit, owner, warnings };
}

export interface UninstallResult {
  /** False when core_pattern was not coresnap's (nothing done). */
  changed: boolean;
  restored: string;
  pipeLimit: number;
  /** The pattern found. */
  found: string;
}

export function uninstall(config: CoresnapConfig): UninstallResult {
  const found = readCorePattern();
  const ours = parseCoresnapPattern(found);
  if (!ours) return { changed: false, restored: found, pipeLimit: readPipeLimit(), found };
  const archive = ours.archive ?? config.archivePath;
  const restored = readSaved(archive, PREVIOUS_PATTERN) ?? readSaved(config.archivePath, PREVIOUS_PATTERN) ?? 'core';
  const savedLimit = Number(readSaved(archive, PREVIOUS_PIPE_LIMIT) ?? readSaved(config.archivePath, PREVIOUS_PIPE_LIMIT) ?? '0');
  const pipeLimit = Number.isInteger(savedLimit) && savedLimit >= 0 ? savedLimit : 0;
  // A saved pattern that is itself coresnap's would point at nothing once we are gone.
  const target = parseCoresnapPattern(restored) ? 'core' : restored;
  writeProc(CORE_PATTERN, target);
  writeProc(CORE_PIPE_LIMIT, String(pipeLimit));
  for (const dir of new Set([archive, config.archivePath])) {
    for (const name of [PREVIOUS_PATTERN, PREVIOUS_PIPE_LIMIT]) fs.rmSync(path.join(dir, 'state', name), { force: true });
  }
  return { changed: true, restored: target, pipeLimit, found };
}
