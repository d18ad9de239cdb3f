/**
 * purge.age: unlink what is older than the age, whatever its state (the guide: files are
 * removed "according to the age of the files"). An item's age is the time of its crash (the
 * handler's `%t`, else its file's modification time); all its files go together. Scratch files the
 * handler or the daemon left behind (tmp/, half-written temporaries) go after an hour.
 */

import fs from 'node:fs';
import path from 'node:path';

import { type ArchiveLayout, isUuid, listState, readMeta, removeItem, STATES } from './archive.js';
import type { Log } from './log.js';

const SCRATCH_AGE_SECONDS = 3600;

export interface PurgeResult {
  removed: string[];
}

function ageOf(layout: ArchiveLayout, uuid: string, file: string, now: number): number {
  const meta = readMeta(layout, uuid);
  if (typeof meta?.time === 'number') return now - meta.time;
  try {
    return now - fs.lstatSync(file).mtimeMs / 1000;
  } catch {
    return 0;
  }
}

/** The names in one of the archive's folders; none when it cannot be read (or is not there yet). */
function entriesOf(layout: ArchiveLayout, dir: string): string[] {
  try {
    return fs.readdirSync(layout.dir(dir));
  } catch {
    return [];
  }
}

export async function purge(layout: ArchiveLayout, ageSeconds: number, busy: ReadonlySet<string>, log: Log, now = Date.now() / 1000): Promise<PurgeResult> {
  const removed: string[] = [];
  const seen = new Set<string>();
  for (const state of STATES) {
    for (const uuid of listState(layout, state)) {
      if (busy.has(uuid) || seen.has(uuid)) continue;
      seen.add(uuid);
      const age = ageOf(layout, uuid, layout.pathOf(state, uuid), now);
      if (age <= ageSeconds) continue;
      await removeItem(layout, uuid);
      removed.push(uuid);
      log.info(`purged ${state}/${uuid}: ${Math.round(age)} s old, purge.age is ${ageSeconds} s`);
    }
  }
  // Files whose item has left every state (compressed cores, metadata, assets of purged or
  // hand-removed items) once they are past the age too.
  for (const dir of ['cores', 'meta', 'assets']) {
    for (const name of entriesOf(layout, dir)) {
      const uuid = name.slice(0, 36);
      if (!isUuid(uuid) || seen.has(uuid) || busy.has(uuid)) continue;
      const age = ageOf(layout, uuid, path.join(layout.dir(dir), name), now);
      if (age <= ageSeconds) continue;
      seen.add(uuid);
      await removeItem(layout, uuid);
      removed.push(uuid);
      log.info(`purged leftovers of ${uuid}: ${Math.round(age)} s old`);
    }
  }
  for (const dir of ['tmp', 'sending', 'cores']) {
    for (const name of entriesOf(layout, dir)) {
      if (dir !== 'tmp' && !name.startsWith('.')) continue;
      const file = path.join(layout.dir(dir), name);
      try {
        if (now - fs.lstatSync(file).mtimeMs / 1000 > SCRATCH_AGE_SECONDS) fs.rmSync(file, { force: true });
      } catch {
        // gone already
      }
    }
  }
  return { removed };
}
