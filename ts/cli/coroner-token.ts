/** `coroner token create|list|delete`: submission tokens, each scoped to one project. */

import type { Command } from 'commander';
import * as admin from '../coroner/admin.js';
import { date, print, storeOptions, withStore, type StoreOptions } from './coroner-common.js';

export function registerToken(program: Command): void {
  const token = program.command('token').description('create, list and revoke submission tokens');

  storeOptions(token.command('create <project>').description('create a submission token for a project'))
    .option('--name <name>', 'the name coroner.cf gives it (default: the project name)')
    .action(async (project: string, opts: StoreOptions & { name?: string }) => {
      const t = await withStore(opts, (store, universe) => admin.createToken(store, universe, project, opts.name ? { name: opts.name } : {}));
      print(opts, { ...t, project }, (v) => [`${v.name} = ${v.id}  (project ${v.project})`]);
    });

  storeOptions(token.command('list [project]').description('list live submission tokens')).action(async (project: string | undefined, opts: StoreOptions) => {
    const tokens = await withStore(opts, (store, universe) => admin.listTokens(store, universe, project));
    print(opts, tokens, (ts) => (ts.length === 0 ? ['no tokens'] : ts.map((t) => `${t.project}  ${t.name} = ${t.id}  created ${date(t.createdAt)}`)));
  });

  storeOptions(token.command('delete <token>').description('revoke a submission token (it stops working at once)')).action(async (id: string, opts: StoreOptions) => {
    const t = await withStore(opts, (store, universe) => admin.deleteToken(store, universe, id));
    print(opts, t, (v) => [`revoked token ${v.name} of project ${v.project}`]);
  });
}
