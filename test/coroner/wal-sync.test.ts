/**
 * The group-commit durability barrier (ts/store/wal-sync.ts): an answer is let go only once a
 * sync that started after its commit has returned; after a failed sync nothing is acknowledged;
 * a sync thread that dies is replaced; a closed barrier lets nothing through.
 */

import fs from 'node:fs';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import test from 'ava';
import { publishCommit, WalSync } from '../../ts/store/wal-sync.js';
import { tempDir } from './helpers.js';

const filesIn = (dir: string) => ({ wal: path.join(dir, 'coroner.db-wal'), database: path.join(dir, 'coroner.db') });

const settled = (sync: WalSync, commit: number) =>
  new Promise<Error | null>((resolve) => sync.after(commit, (err) => resolve(err)));

test('a published commit is released once the WAL sync thread has synced after it', async (t) => {
  const dir = tempDir('coroner-walsync-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'coroner.db'), '');
  fs.writeFileSync(path.join(dir, 'coroner.db-wal'), 'frames');
  const sync = new WalSync(filesIn(dir));
  t.teardown(() => sync.close());
  const first = publishCommit(sync.commitCounter);
  const second = publishCommit(sync.commitCounter);
  t.is(second, first + 1, 'commits are numbered in order');
  t.is(await settled(sync, first), null);
  t.is(await settled(sync, second), null);
  // A commit already covered is released at once, without another sync.
  t.is(await settled(sync, first), null);
  // The WAL replaced (same name, new file) is synced through a fresh descriptor.
  fs.rmSync(path.join(dir, 'coroner.db-wal'));
  fs.writeFileSync(path.join(dir, 'coroner.db-wal'), 'new frames');
  t.is(await settled(sync, publishCommit(sync.commitCounter)), null);
  // No WAL at all: the commits were checkpointed into the database file, which is synced instead.
  fs.rmSync(path.join(dir, 'coroner.db-wal'));
  t.is(await settled(sync, publishCommit(sync.commitCounter)), null);
});

test('a failed sync fails what waits and everything after it, with a sentence: nothing more is acknowledged', async (t) => {
  const dir = tempDir('coroner-walsync-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Neither the WAL nor the database file exists: the sync cannot be done.
  const sync = new WalSync(filesIn(dir));
  t.teardown(() => sync.close());
  const lost = publishCommit(sync.commitCounter);
  const err = await settled(sync, lost);
  t.regex(err?.message ?? '', /^The store could not make its writes durable \(.*ENOENT.*\); it acknowledges nothing more until coroner is restarted on a healthy disk\.$/);
  t.is(sync.failure?.message, err!.message);
  // Even once a sync could succeed again, later commits are not acknowledged: recovery might stop
  // at the lost frames and drop them too.
  fs.writeFileSync(path.join(dir, 'coroner.db'), '');
  t.is((await settled(sync, publishCommit(sync.commitCounter)))?.message, err!.message);
});

test('close ends the sync thread; nothing waits or passes afterwards', async (t) => {
  const dir = tempDir('coroner-walsync-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'coroner.db'), '');
  const sync = new WalSync(filesIn(dir));
  const commit = publishCommit(sync.commitCounter);
  t.is(await settled(sync, commit), null);
  await sync.close();
  const after = await settled(sync, publishCommit(sync.commitCounter));
  t.regex(after?.message ?? '', /closed/);
  // A second close is harmless.
  await sync.close();
});

test('a sync thread that dies is replaced; commits waiting on it are released by the new one', async (t) => {
  const dir = tempDir('coroner-walsync-');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'coroner.db-wal'), 'frames');
  const sync = new WalSync(filesIn(dir));
  t.teardown(() => sync.close());
  const syncerOf = () => (sync as unknown as { syncer: Worker | undefined }).syncer;

  // Killed right after starting: something is persistently wrong, so its waiters hear of it
  // (one waits for the next commit, not yet made, so that no sync can release it first)...
  const first = syncerOf()!;
  const heldAtDeath = settled(sync, Number(Atomics.load(sync.commitCounter, 0)) + 1);
  await first.terminate();
  t.regex((await heldAtDeath)?.message ?? '', /WAL sync thread exited/);
  // ...and a commit made while there is no thread waits for the next one, a second on.
  t.is(await settled(sync, publishCommit(sync.commitCounter)), null);
  t.not(syncerOf(), first);

  // Killed after a while: replaced at once, and a commit waiting on it is simply released.
  await new Promise((r) => setTimeout(r, 1100));
  const second = syncerOf()!;
  const commit = publishCommit(sync.commitCounter);
  const waiting = settled(sync, commit + 1);
  await second.terminate();
  publishCommit(sync.commitCounter);
  t.is(await waiting, null);
  t.not(syncerOf(), second);
});
