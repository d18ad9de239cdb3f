/** `coroner backup <dir>`: a consistent copy of the data folder, taken while the server runs (ts/coroner/backup.ts). */

import type { Command } from 'commander';
import { defaultDataDir } from '../coroner/admin.js';
import { backupDataFolder } from '../coroner/backup.js';
import { print } from './coroner-common.js';

export function registerBackup(program: Command): void {
  program
    .command('backup <dir>')
    .description('copy the data folder into a new folder <dir>, consistently, while the server runs (serve --data <dir> runs on the copy)')
    .option('--data <dir>', `data folder (default: ${defaultDataDir()})`)
    .option('--json', 'print JSON')
    .action(async (dir: string, opts: { data?: string; json?: boolean }) => {
      const result = await backupDataFolder(opts.data ?? defaultDataDir(), dir);
      print(opts, result, (r) => [
        `backed up ${r.from} to ${r.to}: ${r.databases.join(', ')} and ${r.blobFiles} blob file${r.blobFiles === 1 ? '' : 's'} ` +
          `(${(r.blobBytes / 1024 / 1024).toFixed(1)} MiB) in ${r.seconds.toFixed(1)} s`,
        ...(r.missingBlobs
          ? [`${r.missingBlobs} blob file${r.missingBlobs === 1 ? ' was' : 's were'} deleted with their crashes while the copy ran; the copy lacks their bodies`]
          : []),
      ]);
    });
}
