/**
 * `morgue`: the query command line of coroner, compatible with Backtrace's morgue (the same
 * commands, flags, session file and wire protocol; backtrace-compat.md §1). bin/morgue runs
 * `main(process.argv)`.
 *
 * Exit codes: 0 done, 1 the server refused or could not be reached (one line on stderr says why),
 * 2 the command line was wrong, 70 a bug.
 */


import { Command, CommanderError } from 'commander';

import { exitWithError, ExitCode } from '../cli/errors.js';
import { coresnapVersion } from '../native/index.js';
import { deleteCommand } from './delete.js';
import { describeCommand } from './describe.js';
import { getCommand } from './get.js';
import { listCommand } from './list.js';
import { loginCommand } from './login.js';
import { logoutCommand } from './logout.js';
import { putCommand } from './put.js';
import { setCommand } from './set.js';

export function program(): Command {
  const root = new Command('morgue')
    .description('query and manage crash objects on a coroner (Backtrace-compatible)')
    .version(coresnapVersion(), '-V, --version')
    .showSuggestionAfterError(true)
    .exitOverride()
    // commander would print its own errors; exitWithError prints them once, as `morgue: ...`.
    .configureOutput({ outputError: () => undefined });
  for (const command of [loginCommand(), logoutCommand(), listCommand(), describeCommand(), getCommand(), putCommand(), deleteCommand(), setCommand()]) {
    command.copyInheritedSettings(root);
    root.addCommand(command);
  }
  return root;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') process.exit(0);
      if (err.code === 'commander.help' || err.code === 'commander.executeSubCommandAsync') process.exit(ExitCode.Usage);
    }
    exitWithError('morgue', err);
  }
}
