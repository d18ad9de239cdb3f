/**
 * What can go wrong talking to a coroner, each as one sentence for the user.
 * All of them are [[InputError]]s, so `exitWithError` prints the message alone and exits 1.
 */

import { InputError } from '../cli/errors.js';

/** The server answered, but not with success: a non-200 status or a 200 whose JSON has `error`. */
export class ServerError extends InputError {
  override name = 'ServerError';
  constructor(
    message: string,
    /** The HTTP status, or 200 for an `{"error": ...}` body. */
    readonly status: number,
    /** `error.code` from the body, when there was one. */
    readonly code?: number,
  ) {
    super(message);
  }
}

/** No answer at all: refused, unknown host, timed out, TLS failure. */
export class UnreachableError extends InputError {
  override name = 'UnreachableError';
}

/** There is no usable session: never logged in, logged out, or the server no longer knows the token. */
export class SessionError extends InputError {
  override name = 'SessionError';
}
