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
import { AdminError } from './admin.js';

/** The databases of a data folder, in the order they are copied. */
const DATABASES = ['coroner.db', 'workflows.db'] as const;
const CLIENT_CONFIG = 'coroner.cf';

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
  const from = path.resolve(dataDir);
  const to = path.resolve(destination);
  if (!fs.existsSync(path.join(from, 'coroner.db'))) throw new AdminError(`There is no coroner data folder at ${from} (no coroner.db).`);
  if (to === from || to.startsWith(`${from}${path.sep}`)) throw new AdminError('The backup cannot go inside the data folder it copies.');
  if (fs.existsSync(to) && (!fs.statSync(to).isDirectory() || fs.readdirSync(to).length > 0)) {
    throw new AdminError(`${to} already exists and is not an empty folder: a backup goes into a new one.`);
  }
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });

  const databases: string[] = [];
  for (const name of DATABASES) {
    const source = path.join(from, name);
    if (!fs.existsSync(source)) continue;
    const db = new Database(source, { fileMustExist: true });
    try {
      db.pragma('busy_timeout = 10000');
      await db.backup(path.join(to, name));
    } finally {
      db.close();
    }
    fsyncFile(path.join(to, name));
    databases.push(name);
  }

  // Exactly the blob files the copied database refers to (names the server made: blobs/xx/<hex>).
  const copy = new Database(path.join(to, 'coroner.db'), { readonly: true });
  const files = (copy.prepare(`SELECT file FROM blobs WHERE file IS NOT NULL`).all() as Array<{ file: string }>).map((r) => r.file);
  copy.close();
  let blobFiles = 0;
  let blobBytes = 0;
  let missingBlobs = 0;
  for (const rel of files) {
    if (!/^blobs\/[0-9a-f]{2}\/[0-9a-f]{32}$/.test(rel)) continue;
    const target = path.join(to, rel);
    fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o700 });
    try {
      fs.copyFileSync(path.join(from, rel), target, fs.constants.COPYFILE_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        missingBlobs++;
        continue;
      }
      throw err;
    }
    fsyncFile(target);
    blobFiles++;
    blobBytes += fs.statSync(target).size;
  }
  const config = path.join(from, CLIENT_CONFIG);
  if (fs.existsSync(config)) {
    fs.copyFileSync(config, path.join(to, CLIENT_CONFIG));
    fs.chmodSync(path.join(to, CLIENT_CONFIG), 0o600);
  }
  fsyncFile(to);
  return { from, to, databases, blobFiles, blobBytes, missingBlobs, seconds: (Date.now() - started) / 1000 };
}

function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
