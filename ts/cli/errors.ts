/**
 * The one place that turns an error into what the user reads and the exit code the shell sees.
 * Commands throw; their `main` catches once and calls [[exitWithError]].
 *
 * Exit codes (shared by every coresnap command):
 *   1   the input was refused (an unreadable core, a missing file, a process that is gone)
 *   2   the command line was wrong
 *   70  a bug in coresnap (an engine panic, an unexpected exception)
 *   127 the native part is missing (not built, or no package for this platform)
 */

import { NativeError, NativeNotFoundError } from '../native/index.js';

export const ExitCode = {
  Input: 1,
  Usage: 2,
  Internal: 70,
  NativeMissing: 127,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A wrong command line; its message says what to type instead. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Input the user gave that cannot be used; its message is the whole story. */
export class InputError extends Error {
  override name = 'InputError';
}

export interface Described {
  message: string;
  exitCode: ExitCode;
}

/** What to print and which code to exit with, for any thrown value. */
export function describeError(err: unknown): Described {
  if (err instanceof UsageError) return { message: err.message, exitCode: ExitCode.Usage };
  if (err instanceof InputError) return { message: err.message, exitCode: ExitCode.Input };
  if (err instanceof NativeNotFoundError) return { message: err.message, exitCode: ExitCode.NativeMissing };
  if (err instanceof NativeError) {
    switch (err.code) {
      case 'CORESNAP_OPTIONS':
        return { message: err.message, exitCode: ExitCode.Usage };
      case 'CORESNAP_PANIC':
        return { message: err.message, exitCode: ExitCode.Internal };
      default:
        return { message: err.message, exitCode: ExitCode.Input };
    }
  }
  // commander's own errors (unknown option, missing argument) carry a `code` of `commander.*`.
  const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  if (err instanceof Error && typeof code === 'string') {
    if (code.startsWith('commander.')) {
      return { message: err.message.replace(/^error: /, ''), exitCode: ExitCode.Usage };
    }
    // System errors on user-named paths (ENOENT, EACCES, ...) are the user's input problem.
    if (/^E[A-Z]+$/.test(code)) return { message: err.message, exitCode: ExitCode.Input };
  }
  const message = err instanceof Error ? err.message : String(err);
  const detail = process.env.CORESNAP_DEBUG && err instanceof Error && err.stack ? `\n${err.stack}` : '';
  return {
    message: `internal error (a bug in coresnap, please report it): ${message}${detail}`,
    exitCode: ExitCode.Internal,
  };
}

/** Prints `<program>: <message>` to stderr and exits with the matching code. */
export function exitWithError(program: string, err: unknown): never {
  const { message, exitCode } = describeError(err);
  process.stderr.write(`${program}: ${message}\n`);
  process.exit(exitCode);
}
