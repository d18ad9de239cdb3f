/**
 * `coroner backup <dir>`: a consistent copy of a data folder, taken while the server runs.
 *
 * The databases are copied with SQLite's online backup (a snapshot as of one moment, whatever is
 * being written meanwhile), then exactly the blob files that snapshot refers to, then the client
 * configuration. The copy is a data folder: `coroner serve --data <dir>` runs on it as is.
 * A blob file can only go missing if its crash was deleted between the snapshot and the copy;
 * such files are counted, not fatal.
 */

import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { databasePath, fsyncPath } from '../store/sqlite-ops.js';
import { workflowsDatabasePath } from '../workflows/store.js';
import { AdminError, clientConfigPath } from './admin.js';

/** The databases of a data folder (where each is, given the folder), in the order they are copied. */
const DATABASES = [databasePath, workflowsDatabasePath] as const;

export interface BackupResult {
  from: string;
  to: string;
  databases: string[];
  blobFiles: number;
  blobBytes: number;
  /** Blob files the snapshot names that were gone when copied (their crashes deleted meanwhile). */
  missingBlobs: number;
  seconds: number;
}

export async function backupDataFolder(dataDir: string, destination: string): Promise<BackupResult> {
  const started = Date.now();
  if (!fs.existsSync(databasePath(dataDir))) throw new AdminError(`There is no coroner data folder at ${path.resolve(dataDir)} (no coroner.db).`);
  const from = fs.realpathSync(dataDir);
  const to = realDestination(destination);
  if (to === from || to.startsWith(`${from}${path.sep}`)) throw new AdminError('The backup cannot go inside the data folder it copies.');
  if (fs.existsSync(to) && (!fs.statSync(to).isDirectory() || fs.readdirSync(to).length > 0)) {
    throw new AdminError(`${to} already exists and is not an empty folder: a backup goes into a new one.`);
  }
  const madeFrom = fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  // The copy holds password hashes, tokens and integration secrets: for the owner's eyes only,
  // whatever the folder was made with.
  fs.chmodSync(to, 0o700);
  if (madeFrom !== undefined) fsyncPath(path.dirname(to));

  const databases: string[] = [];
  for (const where of DATABASES) {
    const source = where(from);
    const target = where(to);
    if (!fs.existsSync(source)) continue;
    const db = new Database(source, { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 10000');
      // All pages in one step: a snapshot of one read transaction, which the server's commits
      // do not disturb (a backup taken in small steps starts over at every commit, so under
      // steady ingestion it would never end).
      await db.backup(target, { progress: () => ALL_PAGES });
    } finally {
      db.close();
    }
    fs.chmodSync(target, 0o600);
    fsyncPath(target);
    databases.push(path.basename(target));
  }

  // Exactly the blob files the copied database refers to (names the server made: blobs/xx/<hex>).
  const copy = new Database(databasePath(to), { readonly: true });
  const files = (copy.prepare(`SELECT file FROM blobs WHERE file IS NOT NULL`).all() as Array<{ file: string }>).map((r) => r.file);
  copy.close();
  let blobFiles = 0;
  let blobBytes = 0;
  let missingBlobs = 0;
  const madeDirs = new Set<string>();
  for (const rel of files) {
    if (!/^blobs\/[0-9a-f]{2}\/[0-9a-f]{32}$/.test(rel)) continue;
    const target = path.join(to, rel);
    if (!madeDirs.has(path.dirname(target))) {
      fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
      madeDirs.add(path.dirname(target));
    }
    try {
      fs.copyFileSync(path.join(from, rel), target, fs.constants.COPYFILE_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        missingBlobs++;
        continue;
      }
      throw err;
    }
    fsyncPath(target);
    blobFiles++;
    blobBytes += fs.statSync(target).size;
  }
  const config = clientConfigPath(from);
  if (fs.existsSync(config)) {
    fs.copyFileSync(config, clientConfigPath(to));
    fs.chmodSync(clientConfigPath(to), 0o600);
    fsyncPath(clientConfigPath(to));
  }
  // The new names, not only the files' bytes, must be on disk.
  for (const dir of madeDirs) fsyncPath(dir);
  if (madeDirs.size) fsyncPath(path.join(to, 'blobs'));
  fsyncPath(to);
  return { from, to, databases, blobFiles, blobBytes, missingBlobs, seconds: (Date.now() - started) / 1000 };
}

/** Pages per backup step: more than any database has, so the copy is one step. */
const ALL_PAGES = 0x7fffffff;

/** `destination` with every existing part of it resolved (it may not exist yet). */
function realDestination(destination: string): string {
  const absolute = path.resolve(destination);
  let existing = absolute;
  const missing: string[] = [];
  while (!fs.existsSync(existing)) {
    missing.unshift(path.basename(existing));
    existing = path.dirname(existing);
  }
  return path.join(fs.realpathSync(existing), ...missing);
}
