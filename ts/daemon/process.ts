/**
 * One crash through the pipeline, one step at a time, each step recorded before the next so a
 * daemon killed at any point resumes where it was and uploads nothing twice that the server
 * accepted (and what it may send again carries the same snapshot uuid, which the server
 * deduplicates):
 *
 * 1. snapshot: write the /proc facts into assets/<uuid>/, run ptrace (the guide's exact command,
 *    as the analysis user) into sending/<uuid>, give the snapshot the crash's uuid and the
 *    daemon's attributes, record `snapshotDone`;
 * 2. compress: pending/<uuid> → cores/<uuid>.zst (zstd), then remove the raw core;
 * 3. upload: route by the executable's path, POST, record `rxid`, move sending/ → sent/.
 *
 * A failing ptrace (a malformed core) or a permanent refusal parks the item with its reason; a
 * transient upload failure schedules a retry with backoff. Nothing here throws for bad input.
 */

import fs, { constants as fsc } from 'node:fs';
import path from 'node:path';

import { type CoresnapConfig, routeFor } from '../config/coresnap-conf.js';
import { packageRoot } from '../native/index.js';
import {
  type ArchiveLayout,
  type HandlerMeta,
  type ItemStatus,
  isRegularFile,
  type Owner,
  readMeta,
  readStatus,
  writeFileAtomic,
  writeStatus,
} from './archive.js';
import { type Attributes, mergeAttributes, metaAttributes, parseDefaults, runDefaultsCommand } from './attributes.js';
import { runChild, shellQuote } from './child.js';
import type { Log } from './log.js';
import { backoffSeconds, redactedUrl, upload } from './upload.js';

export interface PipelineContext {
  config: CoresnapConfig;
  layout: ArchiveLayout;
  log: Log;
  owner: Owner | null;
  /** Clock, seconds (tests may not need it, but one source keeps records consistent). */
  now?: () => number;
}

export type StepResult =
  | { kind: 'done' }
  | { kind: 'parked'; reason: string }
  /** Try again at this time (seconds since the epoch). */
  | { kind: 'retry'; at: number }
  | { kind: 'gone' };

const nowSeconds = (): number => Date.now() / 1000;

export function ptracePath(config: CoresnapConfig): string {
  return config.ptracePath ?? path.join(packageRoot, 'bin', 'ptrace');
}

/** The guide's command: `ptrace --faulted -o<out> --load=libc- --kv=coresnap.object:<uuid> --resource=<assets> --core <core> <exe>`. */
export function ptraceCommand(ctx: Pick<PipelineContext, 'config' | 'layout'>, uuid: string, executable: string | null): string[] {
  const { layout } = ctx;
  const words = [
    ptracePath(ctx.config),
    '--faulted',
    `-o${layout.sending(uuid)}`,
    '--load=libc-',
    `--kv=coresnap.object:${uuid}`,
    `--resource=${layout.assets(uuid)}`,
    '--core',
    layout.pending(uuid),
  ];
  if (executable) words.push(executable);
  return words;
}

function lastLine(text: string): string {
  return text.trim().split('\n').filter(Boolean).pop() ?? '';
}

/** assets/<uuid>/: what only /proc knew, attached to the snapshot by ptrace --resource. */
function writeAssets(ctx: PipelineContext, uuid: string, meta: HandlerMeta | null): void {
  const dir = ctx.layout.assets(uuid);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { mode: 0o750 });
  const files: [string, string | null | undefined][] = [
    ['proc-status.txt', meta?.status],
    ['proc-maps.txt', meta?.maps],
    ['proc-limits.txt', meta?.limits],
    ['proc-cgroup.txt', meta?.cgroup],
    ['cmdline.txt', meta?.cmdline ? `${meta.cmdline.join('\n')}\n` : null],
    [
      'environment.txt',
      meta?.environment && Object.keys(meta.environment).length > 0
        ? Object.entries(meta.environment)
            .map(([k, v]) => `${k}=${v}\n`)
            .join('')
        : null,
    ],
  ];
  for (const [name, text] of files) {
    if (!text) continue;
    const fd = fs.openSync(path.join(dir, name), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o640);
    try {
      fs.writeFileSync(fd, text);
    } finally {
      fs.closeSync(fd);
    }
  }
  if (process.geteuid?.() === 0 && ctx.owner) {
    fs.chownSync(dir, 0, ctx.owner.gid);
    for (const name of fs.readdirSync(dir)) fs.chownSync(path.join(dir, name), 0, ctx.owner.gid);
  }
}

/**
 * The handler gives each core to the analysis user (handler.conf `owner`); a core spooled before
 * that was configured is root's, and ptrace could not read it.
 */
function handCoreToAnalysisUser(ctx: PipelineContext, uuid: string): void {
  if (!ctx.owner || process.geteuid?.() !== 0) return;
  const fd = fs.openSync(ctx.layout.pending(uuid), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    const st = fs.fstatSync(fd);
    if (st.isFile() && st.uid !== ctx.owner.uid) {
      fs.fchownSync(fd, ctx.owner.uid, ctx.owner.gid);
      fs.fchmodSync(fd, 0o600);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The executable to give ptrace: the path the process ran, if it is still there. */
function executableFor(meta: HandlerMeta | null): string | null {
  const exe = meta?.executable;
  if (!exe || meta?.executableDeleted) return null;
  try {
    return fs.statSync(exe).isFile() ? exe : null;
  } catch {
    return null;
  }
}

function readRegular(file: string): Buffer {
  const fd = fs.openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error(`${file} is not a regular file`);
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function defaultsAttributes(ctx: PipelineContext, executable: string): Promise<Attributes> {
  const fromEnv = process.env.BACKTRACE_DEFAULTS ? parseDefaults(process.env.BACKTRACE_DEFAULTS) : {};
  const command = ctx.config.defaultsCommand;
  if (!command) return fromEnv;
  const outcome = await runDefaultsCommand(command, executable, ctx.owner, ctx.config.defaultsTimeoutSeconds);
  if (outcome.problem) ctx.log.warn(outcome.problem);
  return { ...fromEnv, ...outcome.attributes };
}

async function snapshotStep(ctx: PipelineContext, uuid: string, status: ItemStatus): Promise<StepResult | null> {
  const { layout, log } = ctx;
  const meta = readMeta(layout, uuid);
  const executable = executableFor(meta);
  handCoreToAnalysisUser(ctx, uuid);
  writeAssets(ctx, uuid, meta);
  const words = ptraceCommand(ctx, uuid, executable);
  log.info(`Executing slave: ${shellQuote(words)}`);
  const [file, ...args] = words as [string, ...string[]];
  const result = await runChild(file, args, {
    as: ctx.owner,
    timeoutMs: ctx.config.ptraceTimeoutSeconds * 1000,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C.UTF-8',
      HOME: '/nonexistent',
      CORESNAP_CACHE_DIR: layout.cache,
      ...(process.env.CORESNAP_NATIVE_DIR ? { CORESNAP_NATIVE_DIR: process.env.CORESNAP_NATIVE_DIR } : {}),
    },
  });
  let failure: string | null = null;
  if (result.spawnError) failure = `ptrace cannot be started: ${result.spawnError}`;
  else if (result.timedOut) failure = `ptrace took more than ${ctx.config.ptraceTimeoutSeconds} s and was killed`;
  else if (result.signal) failure = `ptrace was killed by ${result.signal}: ${lastLine(result.stderr)}`;
  else if (result.code !== 0) failure = `ptrace exited with ${result.code}: ${lastLine(result.stderr) || '(no message)'}`;

  let snapshot: { uuid?: string; attributes?: Attributes } | null = null;
  if (failure === null) {
    try {
      const parsed: unknown = JSON.parse(readRegular(layout.sending(uuid)).toString('utf8'));
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
      snapshot = parsed as { uuid?: string; attributes?: Attributes };
    } catch (err) {
      failure = `ptrace exited 0 but its snapshot cannot be read: ${(err as Error).message}`;
    }
  }
  if (failure !== null || snapshot === null) {
    const reason = failure ?? 'no snapshot';
    log.error(`crash ${uuid}: ${reason}; parked in pending/ (rerun the command above as ${ctx.owner?.user ?? 'this user'} to see it, then \`coresnap retry pending/${uuid.slice(0, 8)}\`)`);
    fs.rmSync(layout.sending(uuid), { force: true });
    status.parked = { stage: 'snapshot', reason, at: Math.floor((ctx.now ?? nowSeconds)()) };
    writeStatus(layout, status);
    return { kind: 'parked', reason };
  }
  // The crash's uuid names the snapshot too: a resend after a crash of the daemon is the same
  // object to the server, which refuses uuids it already has.
  snapshot.uuid = uuid;
  const defaults = await defaultsAttributes(ctx, meta?.executable ?? executable ?? meta?.comm ?? '');
  mergeAttributes(snapshot, uuid, metaAttributes(meta, uuid), defaults);
  writeFileAtomic(layout.sending(uuid), JSON.stringify(snapshot), 0o640);
  status.snapshotDone = true;
  writeStatus(layout, status);
  return null;
}

/** pending/<uuid> → cores/<uuid>.zst through zstd (by descriptor: zstd never sees a path). */
async function compressStep(ctx: PipelineContext, uuid: string): Promise<void> {
  const { layout, log } = ctx;
  const raw = layout.pending(uuid);
  if (!isRegularFile(raw)) return;
  const target = layout.compressedCore(uuid);
  const tmp = path.join(path.dirname(target), `.${uuid}.zst.tmp`);
  fs.rmSync(tmp, { force: true });
  const input = fs.openSync(raw, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  const output = fs.openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  let ok = false;
  try {
    const result = await runChild('zstd', ['-q', '-c', '-3', '-T1'], { stdinFd: input, stdoutFd: output, timeoutMs: 600_000, as: ctx.owner });
    ok = result.code === 0;
    if (!ok) log.warn(`zstd could not compress the core of ${uuid} (${result.spawnError ?? lastLine(result.stderr) ?? result.code}); keeping it uncompressed`);
    if (ok) fs.fsyncSync(output);
  } finally {
    fs.closeSync(input);
    fs.closeSync(output);
  }
  if (ok) {
    fs.renameSync(tmp, target);
  } else {
    fs.rmSync(tmp, { force: true });
    fs.renameSync(raw, path.join(layout.dir('cores'), uuid));
    return;
  }
  fs.rmSync(raw, { force: true });
}

async function uploadStep(ctx: PipelineContext, uuid: string, status: ItemStatus, started: number): Promise<StepResult> {
  const { layout, log, config } = ctx;
  const now = (ctx.now ?? nowSeconds)();
  if (status.rxid || status.sentAt) {
    // Accepted before a restart; only the move was left.
    fs.renameSync(layout.sending(uuid), layout.sent(uuid));
    return { kind: 'done' };
  }
  if (status.nextAttemptAt && status.nextAttemptAt > now) return { kind: 'retry', at: status.nextAttemptAt };
  const meta = readMeta(layout, uuid);
  const subject = meta?.executable ?? meta?.comm ?? '';
  const route = routeFor(config, subject);
  if (!route) {
    const reason = `no format rule matches ${subject || '(unknown executable)'}`;
    status.parked = { stage: 'upload', reason, at: Math.floor(now) };
    writeStatus(layout, status);
    log.error(`crash ${uuid}: ${reason}; parked in sending/`);
    return { kind: 'parked', reason };
  }
  const coroner = config.coroner;
  if (!coroner) {
    const reason = 'no coroner.cf is loaded';
    status.parked = { stage: 'upload', reason, at: Math.floor(now) };
    writeStatus(layout, status);
    return { kind: 'parked', reason };
  }
  status.project = route.project;
  const file = layout.sending(uuid);
  log.info(
    `Uploading ${file} to project ${route.project} at ${redactedUrl(coroner)} (the same as: coroner -c ${coroner.file} put ${route.project} ${route.project} ${file})`,
  );
  let body: Buffer;
  try {
    body = readRegular(file);
  } catch (err) {
    const reason = `the snapshot cannot be read: ${(err as Error).message}`;
    status.parked = { stage: 'upload', reason, at: Math.floor(now) };
    writeStatus(layout, status);
    log.error(`crash ${uuid}: ${reason}`);
    return { kind: 'parked', reason };
  }
  const outcome = await upload(coroner, route.project, body, config.uploadTimeoutSeconds);
  const after = (ctx.now ?? nowSeconds)();
  if (outcome.kind === 'accepted') {
    status.rxid = outcome.rxid ?? '';
    status.sentAt = Math.floor(after);
    status.lastError = undefined;
    status.nextAttemptAt = undefined;
    const seconds = Math.max(0, Math.round(after - started));
    status.seconds = seconds;
    writeStatus(layout, status);
    fs.renameSync(file, layout.sent(uuid));
    log.info(`crash ${uuid} accepted by ${coroner.write} into ${route.project}${outcome.rxid ? ` as _rxid ${outcome.rxid}` : ' (no _rxid in the answer)'}`);
    log.info(`crash ${uuid} processed in ${seconds} second${seconds === 1 ? '' : 's'}`);
    return { kind: 'done' };
  }
  if (outcome.kind === 'permanent') {
    status.parked = { stage: 'upload', reason: outcome.reason, at: Math.floor(after) };
    status.lastError = outcome.reason;
    writeStatus(layout, status);
    log.error(`crash ${uuid}: ${outcome.reason}; parked in sending/ (fix it, then \`coresnap retry sending/${uuid.slice(0, 8)}\`)`);
    return { kind: 'parked', reason: outcome.reason };
  }
  const attempts = (status.attempts ?? 0) + 1;
  const wait = backoffSeconds(attempts - 1, config.backoffInitialSeconds, config.backoffMaxSeconds);
  status.attempts = attempts;
  status.lastError = outcome.reason;
  status.nextAttemptAt = after + wait;
  writeStatus(layout, status);
  log.warn(`crash ${uuid}: upload attempt ${attempts} failed: ${outcome.reason}; next attempt in ${wait.toFixed(1)} s`);
  return { kind: 'retry', at: status.nextAttemptAt };
}

/** Advances one item as far as it can go now. */
export async function advance(ctx: PipelineContext, uuid: string): Promise<StepResult> {
  const { layout } = ctx;
  const status = readStatus(layout, uuid);
  if (status.parked) return { kind: 'parked', reason: status.parked.reason };
  if (isRegularFile(layout.sent(uuid))) return { kind: 'done' };
  const hasPending = isRegularFile(layout.pending(uuid));
  const hasSnapshot = isRegularFile(layout.sending(uuid)) && status.snapshotDone === true;
  if (!hasPending && !hasSnapshot) return { kind: 'gone' };
  const started = status.processedAt ?? (ctx.now ?? nowSeconds)();
  if (status.processedAt === undefined) {
    status.processedAt = started;
    writeStatus(layout, status);
  }
  if (!hasSnapshot) {
    const parked = await snapshotStep(ctx, uuid, status);
    if (parked) return parked;
  }
  await compressStep(ctx, uuid);
  return uploadStep(ctx, uuid, status, started);
}
