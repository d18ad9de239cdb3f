/**
 * `coresnap install | uninstall | list | retry`: the administrator's commands.
 *
 *   coresnap install [-c FILE] [--pipe-limit N]   register the handler in core_pattern
 *   coresnap uninstall [-c FILE]                  give core_pattern back
 *   coresnap list [-c FILE] [--all] [--json]      what is waiting (pending/, sending/)
 *   coresnap retry [-c FILE] <state>/<uuid-prefix>  redo one item
 *   coresnap triage [--user U] [--snapshots DIR] [--summary F] [--cores DIR] [--fail-on-crash] [--json] -- <command...>
 *                                                  a CI step: run it, backtrace its crashes
 */

import fs from 'node:fs';
import { Command } from 'commander';

import { loadCoresnapConfig } from '../config/coresnap-conf.js';
import { ConfigError } from '../config/problems.js';
import { ArchiveLayout, type ItemState } from '../daemon/archive.js';
import { DEFAULT_PIPE_LIMIT, install, uninstall } from '../daemon/install.js';
import { collect, markForRetry, pokeDaemon, renderListing, resolveItem } from './coresnap-list.js';
import { renderTriage, summaryMarkdown, triage, type TriageOptions } from './coresnap-triage.js';
import { exitWithError, InputError, UsageError } from './errors.js';

function requireRoot(what: string): void {
  if (process.geteuid?.() !== 0) throw new InputError(`${what} changes /proc/sys/kernel/core_pattern and needs root (try sudo coresnap ${what})`);
}

function configOf(file: string | undefined, withoutCoroner: boolean) {
  try {
    return loadCoresnapConfig({ file, withoutCoroner });
  } catch (err) {
    if (err instanceof ConfigError) throw new InputError(err.message);
    throw err;
  }
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('coresnap')
    .description('Catch every core dump on this machine: install the handler, and look at its archive')
    .exitOverride()
    // `triage` passes everything after its command's name to that command.
    .enablePositionalOptions()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('install')
    .description('register coresnap-handler in /proc/sys/kernel/core_pattern (remembers what was there)')
    .option('-c, --config <file>', 'coresnap.conf')
    .option('--pipe-limit <n>', `kernel.core_pipe_limit: handlers running at once before the kernel skips dumps (default: dump.pipe_limit, ${DEFAULT_PIPE_LIMIT})`)
    .action((opts: { config?: string; pipeLimit?: string }) => {
      requireRoot('install');
      const pipeLimit = opts.pipeLimit === undefined ? undefined : Number(opts.pipeLimit);
      if (pipeLimit !== undefined && (!Number.isInteger(pipeLimit) || pipeLimit < 1)) {
        throw new UsageError(`--pipe-limit ${opts.pipeLimit}: expected a whole number of at least 1`);
      }
      // The daemon needs the tokens; installing the handler does not (crashes spool either way).
      const config = configOf(opts.config, true);
      const result = install(config, { pipeLimit });
      for (const warning of result.warnings) process.stderr.write(`coresnap: warning: ${warning}\n`);
      process.stdout.write(
        `${result.changed ? 'installed' : 'already installed'}: core_pattern = ${result.pattern}\n` +
          `core_pipe_limit = ${result.pipeLimit}; archive ${config.archivePath}` +
          `${result.owner ? `; cores are analysed as ${result.owner.user} (uid ${result.owner.uid})` : ''}\n` +
          `uninstall restores: ${result.previous}\n`,
      );
    });

  program
    .command('uninstall')
    .description('restore the core_pattern coresnap install found')
    .option('-c, --config <file>', 'coresnap.conf')
    .action((opts: { config?: string }) => {
      requireRoot('uninstall');
      const config = configOf(opts.config, true);
      const result = uninstall(config);
      process.stdout.write(
        result.changed
          ? `uninstalled: core_pattern = ${result.restored}, core_pipe_limit = ${result.pipeLimit}\n`
          : `not installed (core_pattern = ${result.found}); nothing to do\n`,
      );
    });

  program
    .command('list')
    .description('crashes not yet snapshotted (pending) or not yet sent (sending)')
    .option('-c, --config <file>', 'coresnap.conf')
    .option('--archive <dir>', 'the archive (default: archive.path of coresnap.conf)')
    .option('--all', 'also list sent snapshots kept until purge.age')
    .option('--json', 'print JSON')
    .action((opts: { config?: string; archive?: string; all?: boolean; json?: boolean }) => {
      const layout = new ArchiveLayout(opts.archive ?? configOf(opts.config, true).archivePath);
      const states: ItemState[] = opts.all ? ['pending', 'sending', 'sent'] : ['pending', 'sending'];
      const listing = collect(layout, states);
      if (opts.json) process.stdout.write(`${JSON.stringify(listing, null, 2)}\n`);
      else process.stdout.write(renderListing(listing));
    });

  program
    .command('retry')
    .description('redo one item: pending/<uuid-prefix> snapshots it again, sending/<uuid-prefix> uploads it again')
    .argument('<item>', '<state>/<uuid-prefix>, as coresnap list shows it')
    .option('-c, --config <file>', 'coresnap.conf')
    .option('--archive <dir>', 'the archive (default: archive.path of coresnap.conf)')
    .action(async (spec: string, opts: { config?: string; archive?: string }) => {
      const layout = new ArchiveLayout(opts.archive ?? configOf(opts.config, true).archivePath);
      const { state, uuid } = resolveItem(layout, spec);
      const was = markForRetry(layout, state, uuid);
      const poked = await pokeDaemon(layout, uuid);
      process.stdout.write(
        `${state}/${uuid}: was ${was}; ${poked ? 'coresnapd is on it' : 'coresnapd is not running; it retries when it starts'}\n`,
      );
    });

  program
    .command('triage')
    .description('run a command with its crashes caught, then print a backtrace of every process that crashed (a CI step; needs root)')
    .argument('<command...>', 'the command to run, after --')
    .option('--cores <dir>', 'keep the cores in this folder (default: a temporary one, removed)')
    .option('--snapshots <dir>', 'write a snapshot (JSON) of each crash here, e.g. to upload with coroner put')
    .option('--summary <file>', 'append a Markdown summary here (default: $GITHUB_STEP_SUMMARY when set)')
    .option('--fail-on-crash', 'exit 1 when something crashed even though the command succeeded')
    .option('--user <name>', 'run the command as this user, not as root (sudo coresnap triage --user "$USER" -- ...)')
    .option('--json', 'print the result as JSON instead of the backtraces')
    .passThroughOptions()
    .action(async (command: string[], opts: TriageOptions & { failOnCrash?: boolean }) => {
      const result = await triage(command, opts);
      process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : renderTriage(result));
      const summary = opts.summary ?? process.env.GITHUB_STEP_SUMMARY;
      try {
        // As root, into a file the job's user may control: never through a symbolic link.
        if (summary) {
          const fd = fs.openSync(summary, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o644);
          try {
            fs.writeSync(fd, summaryMarkdown(result));
          } finally {
            fs.closeSync(fd);
          }
        }
      } catch (err) {
        // The backtraces are in the log already: a summary that cannot be written must not change the verdict.
        process.stderr.write(`coresnap: warning: cannot write the summary to ${summary}: ${(err as Error).message}\n`);
      }
      process.exitCode = result.exitCode === 0 && opts.failOnCrash && result.crashes.length > 0 ? 1 : result.exitCode;
    });

  try {
    await program.parseAsync(argv);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.help' || code === 'commander.version') process.exit(0);
    if (typeof code === 'string' && code.startsWith('commander.')) process.exit(2);
    exitWithError('coresnap', err);
  }
}
