/**
 * `morgue login <url>`: POST /api/login (form body: username/password, or token), then save the
 * answer verbatim as the session (see session.ts). Credentials come from --token, else
 * MORGUE_USERNAME + MORGUE_PASSWORD, else a prompt when stdin is a terminal.
 */

import { Command } from 'commander';

import { UsageError } from '../cli/errors.js';
import { CoronerClient } from './client.js';
import { ServerError } from './errors.js';
import { promptCredentials } from './prompt.js';
import { type LoginConfig, saveSession, submissionEndpointFor } from './session.js';
import { withSpinner } from './spinner.js';
import { write } from './context.js';

interface LoginOptions {
  token?: string;
  json?: boolean;
}

async function credentials(options: LoginOptions): Promise<{ username: string; password: string } | { token: string }> {
  if (options.token !== undefined) {
    if (options.token === '') throw new UsageError('--token is empty');
    return { token: options.token };
  }
  const { MORGUE_USERNAME: username, MORGUE_PASSWORD: password } = process.env;
  if (username && password !== undefined) return { username, password };
  if (!process.stdin.isTTY) {
    throw new UsageError('no credentials: set MORGUE_USERNAME and MORGUE_PASSWORD, or use --token=<api token> (there is no terminal to ask on)');
  }
  return promptCredentials(username);
}

export async function login(url: string, options: LoginOptions): Promise<void> {
  const client = new CoronerClient({ endpoint: url });
  try {
    const creds = await credentials(options);
    let answer: Record<string, unknown>;
    try {
      answer = await withSpinner(`Logging in to ${client.origin}`, client.login(creds));
    } catch (err) {
      if (err instanceof ServerError) throw new ServerError(`unable to authenticate: ${err.message}`, err.status, err.code);
      throw err;
    }
    if (typeof answer.token !== 'string' || answer.token === '') {
      throw new ServerError('unable to authenticate: the login response has no token', 200);
    }
    const config = answer as LoginConfig;
    const session = { config, endpoint: client.origin, submissionEndpoint: submissionEndpointFor(client.origin, config) };
    if (session.submissionEndpoint === undefined) delete session.submissionEndpoint;
    const file = saveSession(session);
    const user = config.user?.username ?? ('username' in creds ? creds.username : undefined);
    const universe = config.universe?.name ?? Object.keys(config.universes ?? {})[0];
    if (options.json) {
      write(`${JSON.stringify({ endpoint: session.endpoint, submissionEndpoint: session.submissionEndpoint, user, universe, session: file }, null, 2)}\n`);
    } else {
      write(`Logged in${user ? ` as ${user}` : ''} to ${client.origin}${universe ? ` (universe ${universe})` : ''}.\n`);
    }
  } finally {
    await client.close();
  }
}

export function loginCommand(): Command {
  return new Command('login')
    .description('log in to a coroner and save the session')
    .argument('<url>', 'the coroner, e.g. https://coroner.example.com or http://127.0.0.1:8080')
    .option('--token <token>', 'log in with an API token instead of a username and password')
    .option('--json', 'print the session summary as JSON')
    .action(login);
}
