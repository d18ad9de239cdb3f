/** `coroner user create|list|delete`: the users of a universe. */

import type { Command } from 'commander';
import * as admin from '../coroner/admin.js';
import { UsageError } from './errors.js';
import { date, print, storeOptions, withStore, type StoreOptions } from './coroner-common.js';

export function registerUser(program: Command): void {
  const user = program.command('user').description('create, list and delete users');

  storeOptions(user.command('create <username>').description('create a user (password from --password, or CORONER_PASSWORD)'))
    .option('--email <address>', 'email address', '')
    .option('--password <password>', 'password (visible to other local users: prefer CORONER_PASSWORD)')
    .option('--superuser', 'may administer the universe')
    .action(async (username: string, opts: StoreOptions & { email: string; password?: string; superuser?: boolean }) => {
      const password = opts.password ?? process.env.CORONER_PASSWORD;
      if (!password) throw new UsageError('give the password with --password or in the environment variable CORONER_PASSWORD');
      const created = await withStore(opts, (store, universe) =>
        admin.createUser(store, universe, { username, email: opts.email, password, superuser: opts.superuser ?? false }),
      );
      print(opts, created, (u) => [`created user ${u.username}${u.superuser ? ' (superuser)' : ''}`]);
    });

  storeOptions(user.command('list').description('list users')).action(async (opts: StoreOptions) => {
    const users = await withStore(opts, (store, universe) => admin.listUsers(store, universe));
    print(opts, users, (us) => us.map((u) => `${u.username}${u.superuser ? '  superuser' : ''}${u.email ? `  <${u.email}>` : ''}  created ${date(u.createdAt)}`));
  });

  storeOptions(user.command('delete <username>').description('delete a user and end their sessions')).action(async (username: string, opts: StoreOptions) => {
    const deleted = await withStore(opts, (store, universe) => admin.deleteUser(store, universe, username));
    print(opts, deleted, (u) => [`deleted user ${u.username}`]);
  });
}
