/**
 * The archive on disk (default /var/coresnap/archive) and what is in it.
 *
 * ```
 * pending/<uuid>         a core the handler spooled, not yet snapshotted (0600, the analysis user's)
 * sending/<uuid>         its snapshot (ptrace -o), not yet accepted by the server
 * sent/<uuid>            a snapshot the server accepted (kept until purge.age)
 * assets/<uuid>/         files attached to the snapshot (ptrace --resource): what /proc said
 * cores/<uuid>.zst       the core, zstd-compressed once its snapshot is made
 * meta/<uuid>.json       the handler's facts (pid, executable, cmdline, maps, ...)
 * meta/<uuid>.status.json  the daemon's record: stage reached, attempts, parked reason, _rxid
 * tmp/ state/ log/       handler scratch, handler.conf/counters/socket, coresnap.log
 * ```
 *
 * The metadata lives in meta/ rather than beside the core so that the guide's
 * `ptrace --core pending/143fc129-afc* ...` glob still names exactly one file.
 *
 * Who may write where: the handler (root) writes tmp/, pending/, meta/, state/, log/, which are
 * root's and writable by no one else; ptrace runs as the analysis user and writes only
 * sending/ (group-writable for that user); everything else is the daemon's (root).
 */

import { constants as fsc, promises as fsp } from 'node:fs';
import fs from 'node:fs';
import path from 'node:path';

export const STATES = ['pending', 'sending', 'sent'] as const;
export type ItemState = (typeof STATES)[number];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export function isUuid(name: string): boolean {
  return UUID.test(name);
}

/** The owner of the files the analysis user must read or write; null when not running as root. */
export interface Owner {
  user: string;
  uid: number;
  gid: number;
}

export class ArchiveLayout {
  constructor(readonly root: string) {}
  dir(name: string): string {
    return path.join(this.root, name);
  }
  pending(uuid: string): string {
    return path.join(this.root, 'pending', uuid);
  }
  sending(uuid: string): string {
    return path.join(this.root, 'sending', uuid);
  }
  sent(uuid: string): string {
    return path.join(this.root, 'sent', uuid);
  }
  assets(uuid: string): string {
    return path.join(this.root, 'assets', uuid);
  }
  compressedCore(uuid: string): string {
    return path.join(this.root, 'cores', `${uuid}.zst`);
  }
  meta(uuid: string): string {
    return path.join(this.root, 'meta', `${uuid}.json`);
  }
  status(uuid: string): string {
    return path.join(this.root, 'meta', `${uuid}.status.json`);
  }
  get state(): string {
    return path.join(this.root, 'state');
  }
  get socket(): string {
    return path.join(this.root, 'state', 'coresnapd.sock');
  }
  get handlerConf(): string {
    return path.join(this.root, 'state', 'handler.conf');
  }
  get counters(): string {
    return path.join(this.root, 'state', 'counters');
  }
  get logFile(): string {
    return path.join(this.root, 'log', 'coresnap.log');
  }
  get cache(): string {
    return path.join(this.root, 'cache');
  }
  pathOf(state: ItemState, uuid: string): string {
    return state === 'pending' ? this.pending(uuid) : state === 'sending' ? this.sending(uuid) : this.sent(uuid);
  }
}

/** Folder, mode, and whether its group is the analysis user's (see the module comment). */
const DIRS: { name: string; mode: number; group: boolean; owner?: boolean }[] = [
  { name: 'tmp', mode: 0o700, group: false },
  { name: 'pending', mode: 0o750, group: true },
  { name: 'meta', mode: 0o750, group: true },
  { name: 'state', mode: 0o700, group: false },
  { name: 'log', mode: 0o750, group: false },
  { name: 'sending', mode: 0o770, group: true },
  { name: 'sent', mode: 0o750, group: false },
  { name: 'assets', mode: 0o750, group: true },
  { name: 'cores', mode: 0o700, group: false },
  { name: 'cache', mode: 0o700, group: true, owner: true },
];

/**
 * Creates the archive and its folders with the modes above (and fixes modes and owners of
 * existing ones). The root is root's, 0751: the analysis user can pass through to its folders but
 * not list or write it.
 */
export function prepareArchive(layout: ArchiveLayout, owner: Owner | null): void {
  fs.mkdirSync(layout.root, { recursive: true, mode: 0o751 });
  const asRoot = process.geteuid?.() === 0;
  const rootStat = fs.lstatSync(layout.root);
  if (!rootStat.isDirectory()) throw new Error(`${layout.root} is not a folder`);
  if (asRoot) fs.chownSync(layout.root, 0, 0);
  fs.chmodSync(layout.root, 0o751);
  for (const dir of DIRS) {
    const full = layout.dir(dir.name);
    try {
      fs.mkdirSync(full, { mode: dir.mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = fs.lstatSync(full);
    if (!st.isDirectory()) throw new Error(`${full} is not a folder (a link or a file stands there)`);
    if (asRoot) {
      const uid = dir.owner && owner ? owner.uid : 0;
      const gid = dir.group && owner ? owner.gid : 0;
      fs.chownSync(full, uid, gid);
    }
    fs.chmodSync(full, dir.mode);
  }
}

export interface HandlerMeta {
  uuid: string;
  pid?: number;
  tid?: number;
  signal?: number;
  time?: number;
  executable?: string | null;
  executableDeleted?: boolean;
  comm?: string | null;
  kernelComm?: string | null;
  application?: string;
  cmdline?: string[];
  cwd?: string | null;
  uid?: number | null;
  gid?: number | null;
  cgroup?: string | null;
  status?: string | null;
  maps?: string | null;
  limits?: string | null;
  environment?: Record<string, string>;
  hostname?: string | null;
  coreSize?: number;
  truncated?: boolean;
  droppedBefore?: number;
  coreLimit?: string;
}

export interface ParkedInfo {
  stage: 'snapshot' | 'upload';
  reason: string;
  at: number;
}

/** The daemon's record of one item; written atomically after each step. */
export interface ItemStatus {
  uuid: string;
  /** The snapshot in sending/ is complete (ptrace succeeded and attributes were merged). */
  snapshotDone?: boolean;
  project?: string;
  attempts?: number;
  nextAttemptAt?: number;
  lastError?: string;
  parked?: ParkedInfo;
  rxid?: string;
  sentAt?: number;
  processedAt?: number;
  /** Seconds from spool to accepted, for the log. */
  seconds?: number;
}

function readJson<T>(file: string): T | null {
  try {
    // O_NOFOLLOW: a link planted in a writable folder is not followed by root.
    const fd = fs.openSync(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    try {
      return JSON.parse(fs.readFileSync(fd, 'utf8')) as T;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
}

export function readMeta(layout: ArchiveLayout, uuid: string): HandlerMeta | null {
  return readJson<HandlerMeta>(layout.meta(uuid));
}

export function readStatus(layout: ArchiveLayout, uuid: string): ItemStatus {
  return readJson<ItemStatus>(layout.status(uuid)) ?? { uuid };
}

/** Writes `data` to `file` through a temporary file, fsync and rename: all or nothing. */
export function writeFileAtomic(file: string, data: string | Buffer, mode = 0o640): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export function writeStatus(layout: ArchiveLayout, status: ItemStatus): void {
  writeFileAtomic(layout.status(status.uuid), `${JSON.stringify(status, null, 2)}\n`);
}

/** Is `file` a regular file (not a link)? */
export function isRegularFile(file: string): boolean {
  try {
    return fs.lstatSync(file).isFile();
  } catch {
    return false;
  }
}

/** The uuids in one state folder, oldest first by modification time. */
export function listState(layout: ArchiveLayout, state: ItemState): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(layout.dir(state));
  } catch {
    return [];
  }
  const items: { uuid: string; mtime: number }[] = [];
  for (const name of names) {
    if (!isUuid(name)) continue;
    try {
      const st = fs.lstatSync(path.join(layout.dir(state), name));
      if (st.isFile()) items.push({ uuid: name, mtime: st.mtimeMs });
    } catch {
      // Gone between readdir and lstat: another process moved it.
    }
  }
  return items.sort((a, b) => a.mtime - b.mtime).map((i) => i.uuid);
}

export interface ItemSummary {
  state: ItemState;
  uuid: string;
  /** c: a core is kept (raw or compressed); s: a snapshot exists; a: assets exist. */
  flags: { core: boolean; snapshot: boolean; assets: boolean };
  executable: string | null;
  application: string | null;
  /** Crash time, seconds since the epoch. */
  time: number;
  /** Bytes of the item's file in its state folder (the core for pending, the snapshot after). */
  size: number;
  parked: ParkedInfo | null;
  project: string | null;
  attempts: number;
  nextAttemptAt: number | null;
  lastError: string | null;
  rxid: string | null;
}

function nonEmptyDir(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

export function summarize(layout: ArchiveLayout, state: ItemState, uuid: string): ItemSummary | null {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(layout.pathOf(state, uuid));
  } catch {
    return null;
  }
  const meta = readMeta(layout, uuid);
  const status = readStatus(layout, uuid);
  const executable = meta?.executable ?? null;
  return {
    state,
    uuid,
    flags: {
      core: isRegularFile(layout.pending(uuid)) || isRegularFile(layout.compressedCore(uuid)),
      snapshot: isRegularFile(layout.sending(uuid)) || isRegularFile(layout.sent(uuid)),
      assets: nonEmptyDir(layout.assets(uuid)),
    },
    executable,
    application: meta?.application ?? (executable ? path.basename(executable) : meta?.comm ?? null),
    time: meta?.time ?? Math.floor(st.mtimeMs / 1000),
    size: st.size,
    parked: status.parked ?? null,
    project: status.project ?? null,
    attempts: status.attempts ?? 0,
    nextAttemptAt: status.nextAttemptAt ?? null,
    lastError: status.lastError ?? null,
    rxid: status.rxid ?? null,
  };
}

/** Every item in the given states, newest state first as the vendor lists them (sending, then pending). */
export function listItems(layout: ArchiveLayout, states: readonly ItemState[]): ItemSummary[] {
  const out: ItemSummary[] = [];
  for (const state of states) {
    for (const uuid of listState(layout, state)) {
      const summary = summarize(layout, state, uuid);
      if (summary) out.push(summary);
    }
  }
  return out;
}

/** The handler's counters (`state/counters`: `name value` lines). */
export function readCounters(layout: ArchiveLayout): Record<string, number> {
  const out: Record<string, number> = {};
  let text = '';
  try {
    text = fs.readFileSync(layout.counters, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const [name, value] = line.trim().split(' ');
    if (name && value && /^\d+$/.test(value)) out[name] = Number(value);
  }
  return out;
}

/** Removes every file of one item, in every state. */
export async function removeItem(layout: ArchiveLayout, uuid: string): Promise<void> {
  const files = [
    layout.pending(uuid),
    layout.sending(uuid),
    layout.sent(uuid),
    layout.compressedCore(uuid),
    layout.meta(uuid),
    layout.status(uuid),
  ];
  await Promise.all(files.map((f) => fsp.rm(f, { force: true })));
  await fsp.rm(layout.assets(uuid), { recursive: true, force: true });
}
