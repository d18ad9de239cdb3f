/**
 * `coresnapd [-c FILE] [--no-install] [--pidfile FILE] [--stderr]`: runs in the foreground (the
 * systemd unit and the SysV script put it in the background). Exit codes: 0 stopped by a signal,
 * 2 a command-line or configuration problem (each named file:line), 1 anything else at start.
 */

import fs from 'node:fs';

import { Command } from 'commander';

import { exitWithError, InputError, UsageError } from '../cli/errors.js';
import { findConfigFile, loadCoresnapConfig } from '../config/coresnap-conf.js';
import { ConfigError } from '../config/problems.js';
import { ArchiveLayout } from './archive.js';
import { Daemon } from './daemon.js';
import { openLog } from './log.js';

interface Options {
  config?: string;
  install: boolean;
  pidfile?: string;
  stderr?: boolean;
  debug?: boolean;
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('coresnapd')
    .description('Turns the core dumps the handler spools into snapshots and uploads them (runs in the foreground)')
    .option('-c, --config <file>', 'coresnap.conf (default: $CORESNAP_CONF, /usr/local/etc/coresnap/coresnap.conf, /etc/coresnap/coresnap.conf)')
    .option('--no-install', 'do not install the handler in core_pattern at start')
    .option('--pidfile <file>', 'write the process id here (SysV init)')
    .option('--stderr', 'also log to standard error when syslog is available')
    .option('--debug', 'log debug lines')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined });
  let options: Options;
  try {
    program.parse(argv);
    options = program.opts<Options>();
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') {
      process.stdout.write(program.helpInformation());
      process.exit(0);
    }
    exitWithError('coresnapd', new UsageError(e.message?.replace(/^error: /, '') ?? String(err)));
  }

  const load = { file: options.config };
  // The archive's log file needs the archive path, which needs the configuration: read it once
  // here for that (problems are reported below, with the daemon's own reading).
  let logFile: string | null = null;
  try {
    // Opened on the first line written, after start() has created the archive's folders.
    logFile = new ArchiveLayout(loadCoresnapConfig({ ...load, withoutCoroner: true }).archivePath).logFile;
  } catch {
    logFile = null;
  }
  const log = openLog({ file: logFile, stderr: options.stderr ?? !fs.existsSync('/dev/log'), debug: options.debug });

  let daemon: Daemon;
  try {
    daemon = new Daemon({ load, install: options.install, log });
    await daemon.start();
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error(`configuration problem, not starting (${findConfigFile(load) ?? 'built-in defaults'}):\n${err.message}`);
      await log.close();
      process.stderr.write(`coresnapd: ${err.message}\n`);
      process.exit(2);
    }
    log.error(`not starting: ${(err as Error).message}`);
    await log.close();
    exitWithError('coresnapd', new InputError((err as Error).message));
  }
  if (options.pidfile) fs.writeFileSync(options.pidfile, `${process.pid}\n`);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal} received, stopping`);
    void daemon
      .stop()
      .then(async () => {
        if (options.pidfile) fs.rmSync(options.pidfile, { force: true });
        await log.close();
        process.exit(0);
      })
      .catch(async (err: Error) => {
        log.error(`stop failed: ${err.message}`);
        await log.close();
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => daemon.reload());
}
