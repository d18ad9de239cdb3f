/** `morgue logout`: GET /api/logout?token=..., then forget the session (even if the server had already). */

import { Command } from 'commander';

import { clientFor, write } from './context.js';
import { SessionError } from './errors.js';
import { removeSession, requireSession } from './session.js';
import { withSpinner } from './spinner.js';

export async function logout(): Promise<void> {
  const session = requireSession();
  const client = clientFor(session);
  try {
    await withSpinner('Logging out', client.getJson('/api/logout'));
  } catch (err) {
    // A session the server no longer knows is as logged out as it gets.
    if (!(err instanceof SessionError)) throw err;
  } finally {
    await client.close();
  }
  removeSession();
  write('Logged out.\n');
}

export function logoutCommand(): Command {
  return new Command('logout').description('end the session on the server and forget it').action(logout);
}
