/** What several coroner subcommands share: the data folder, the store, the universe, output. */

import type { Command } from 'commander';
import { defaultDataDir, DEFAULT_UNIVERSE, requireUniverse } from '../coroner/admin.js';
import { openSqliteStore, type SqliteStore } from '../store/sqlite.js';
import type { Universe } from '../store/types.js';

export interface StoreOptions {
  data?: string;
  universe?: string;
  json?: boolean;
}

/** Adds --data, --universe and --json to an admin subcommand. */
export function storeOptions(cmd: Command): Command {
  return cmd
    .option('--data <dir>', `data folder (default: ${defaultDataDir()})`)
    .option('--universe <name>', 'universe', DEFAULT_UNIVERSE)
    .option('--json', 'print JSON');
}

/** Opens the store on this thread (an admin command is one short transaction) and runs `fn`. */
export async function withStore<T>(options: StoreOptions, fn: (store: SqliteStore, universe: Universe) => Promise<T>): Promise<T> {
  const store = await openSqliteStore({ dataDir: options.data ?? defaultDataDir(), workers: false });
  try {
    const universe = await requireUniverse(store, options.universe ?? DEFAULT_UNIVERSE);
    return await fn(store, universe);
  } finally {
    await store.close();
  }
}

/** Prints `value` as JSON with --json, else the lines `text` makes of it. */
export function print<T>(options: StoreOptions, value: T, text: (v: T) => string[]): void {
  if (options.json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else for (const line of text(value)) process.stdout.write(`${line}\n`);
}

export function date(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}
