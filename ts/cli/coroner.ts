/**
 * `coroner`: the object store's command line. One file per subcommand (coroner-*.ts); this one
 * wires them to commander and turns every error into one line and an exit code (errors.ts).
 *
 *   coroner serve [--data DIR] [--listen HOST:PORT] [--universe NAME] [--tls-cert F --tls-key F]
 *   coroner [-c coroner.cf] put [-u] <project> <tokenname> <file>...
 *   coroner project|token|user create|list|delete ... [--data DIR] [--json]
 *   coroner grouping show|set|explain ... [--data DIR]
 *   coroner integration add|list|remove|log|retry ... [--data DIR]
 *   coroner backup <dir> [--data DIR]
 */

import { Command, CommanderError } from 'commander';
import { AdminError } from '../coroner/admin.js';
import { GroupingRulesError } from '../grouping/rules.js';
import { StoreError } from '../store/types.js';
import { registerBackup } from './coroner-backup.js';
import { registerGrouping } from './coroner-grouping.js';
import { registerIntegration } from './coroner-integration.js';
import { registerProject } from './coroner-project.js';
import { registerPut } from './coroner-put.js';
import { registerServe } from './coroner-serve.js';
import { registerToken } from './coroner-token.js';
import { registerUser } from './coroner-user.js';
import { exitWithError, InputError } from './errors.js';

export function coronerProgram(): Command {
  const program = new Command('coroner')
    .description('coresnap object store: receives crash snapshots and reports, groups them, answers queries')
    .option('-c, --config <file>', 'client configuration for put (coroner.cf)')
    .exitOverride()
    .configureOutput({ writeErr: () => {} })
    .showHelpAfterError(false);
  registerServe(program);
  registerPut(program);
  registerProject(program);
  registerToken(program);
  registerUser(program);
  registerGrouping(program);
  registerIntegration(program);
  registerBackup(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  // `coroner ... | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  try {
    await coronerProgram().parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help')) {
      process.exit(0);
    }
    exitWithError('coroner', userFacing(err));
  }
}

/** Errors of the store and the admin operations are the user's input problems. */
function userFacing(err: unknown): unknown {
  if (err instanceof AdminError || err instanceof StoreError || err instanceof GroupingRulesError) return new InputError(err.message);
  return err;
}
