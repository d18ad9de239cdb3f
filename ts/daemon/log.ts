/**
 * The daemon's log: syslog through `/dev/log` when something listens there (as
 * `coresnap[pid]: ...`, the vendor's words, so `grep coresnap /var/log/syslog` works), else
 * standard error and `log/coresnap.log` in the archive (the file the handler appends to when it
 * has no syslog either).
 *
 * Node cannot send unix datagrams, so syslog goes through one long-lived util-linux `logger`
 * process fed line by line (`--prio-prefix` carries each line's severity).
 */

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';

export type Severity = 'error' | 'warning' | 'info' | 'debug';
const PRIORITY: Record<Severity, number> = { error: 3, warning: 4, info: 6, debug: 7 };
/** Facility daemon. */
const FACILITY = 3;
export const TAG = 'coresnap';

export interface Log {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  debug(message: string): void;
  /** Where lines go, for the start-up message. */
  readonly destination: string;
  close(): Promise<void>;
}

export interface LogOptions {
  /** The archive's log file, used without syslog. */
  file: string | null;
  /** Also write every line to stderr (foreground runs). */
  stderr: boolean;
  /** The syslog socket; `$CORESNAP_SYSLOG_SOCKET` or /dev/log. */
  syslogSocket?: string;
  debug?: boolean;
}

function isSocket(file: string): boolean {
  try {
    return fs.statSync(file).isSocket();
  } catch {
    return false;
  }
}

export function utcTimestamp(date = new Date()): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

export function openLog(options: LogOptions): Log {
  const socket = options.syslogSocket ?? process.env.CORESNAP_SYSLOG_SOCKET ?? '/dev/log';
  let logger: ChildProcessWithoutNullStreams | null = null;
  if (isSocket(socket)) {
    logger = spawn('logger', ['--prio-prefix', '-t', TAG, `--id=${process.pid}`, '-u', socket], { stdio: 'pipe' });
    logger.on('error', () => {
      logger = null;
    });
    logger.on('exit', () => {
      logger = null;
    });
    logger.stdin.on('error', () => {
      logger = null;
    });
  }
  let fileFd: number | null = null;
  const openFile = (): number | null => {
    if (fileFd !== null || options.file === null) return fileFd;
    try {
      fileFd = fs.openSync(options.file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o640);
    } catch {
      fileFd = null;
    }
    return fileFd;
  };

  const write = (severity: Severity, message: string): void => {
    if (severity === 'debug' && !options.debug) return;
    const oneLine = message.replace(/\n/g, ' | ');
    const line = `${utcTimestamp()} ${TAG}[${process.pid}]: ${oneLine}\n`;
    if (options.stderr) process.stderr.write(line);
    if (logger) {
      logger.stdin.write(`<${FACILITY * 8 + PRIORITY[severity]}>${oneLine}\n`);
      return;
    }
    if (!options.stderr) process.stderr.write(line);
    const fd = openFile();
    if (fd !== null) {
      try {
        fs.writeSync(fd, line);
      } catch {
        // A full disk must not stop the daemon; stderr had the line.
      }
    }
  };

  return {
    destination: logger ? `syslog (${socket})` : options.file ? `stderr and ${options.file}` : 'stderr',
    info: (m) => write('info', m),
    warn: (m) => write('warning', m),
    error: (m) => write('error', m),
    debug: (m) => write('debug', m),
    close: async () => {
      const child = logger;
      logger = null;
      if (child) {
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.stdin.end();
          setTimeout(resolve, 2000).unref();
        });
      }
      if (fileFd !== null) {
        fs.closeSync(fileFd);
        fileFd = null;
      }
    },
  };
}
