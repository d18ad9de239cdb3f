/** `coroner project create|list|delete`: projects of a universe, acting on the store directly. */

import type { Command } from 'commander';
import { formatDuration } from '../config/units.js';
import * as admin from '../coroner/admin.js';
import { date, print, storeOptions, withStore, type StoreOptions } from './coroner-common.js';

export function registerProject(program: Command): void {
  const project = program.command('project').description('create, list and delete projects');

  storeOptions(project.command('create <name>').description('create a project and a submission token named after it'))
    .option('--no-token', 'create no submission token')
    .action(async (name: string, opts: StoreOptions & { token: boolean }) => {
      const result = await withStore(opts, (store, universe) => admin.createProject(store, universe, name, { withToken: opts.token }));
      print(opts, result, (r) => [
        `created project ${r.project.name}`,
        ...(r.token ? [`submission token ${r.token.name} = ${r.token.id}  (add it to the [tokens] section of coroner.cf)`] : []),
      ]);
    });

  storeOptions(project.command('list').description('list projects and their submission tokens')).action(async (opts: StoreOptions) => {
    const projects = await withStore(opts, (store, universe) => admin.listProjects(store, universe));
    print(opts, projects, (ps) =>
      ps.length === 0
        ? ['no projects']
        : ps.map((p) => `${p.name}  created ${date(p.createdAt)}  keeps crashes ${retentionText(p.retentionSeconds)}  tokens: ${p.tokens.map((t) => `${t.name}=${t.id}`).join(', ') || 'none'}`),
    );
  });

  storeOptions(
    project
      .command('retention <name> <max-age>')
      .description('delete the crashes a project received longer ago than <max-age> (90d, 12h, 2w, 6M...), or keep them all (off)'),
  ).action(async (name: string, maxAge: string, opts: StoreOptions) => {
    const updated = await withStore(opts, (store, universe) => admin.setRetention(store, universe, name, maxAge));
    print(opts, updated, (p) => [`project ${p.name} keeps crashes ${retentionText(p.retentionSeconds)} (a running server applies it within 10 minutes)`]);
  });

  storeOptions(project.command('delete <name>').description('delete a project with every crash in it')).action(async (name: string, opts: StoreOptions) => {
    const deleted = await withStore(opts, (store, universe) => admin.deleteProject(store, universe, name));
    print(opts, deleted, (p) => [`deleted project ${p.name}`]);
  });
}

/** `for 90d`, `for ever`. */
function retentionText(seconds: number | null): string {
  return seconds === null ? 'for ever' : `for ${formatDuration(seconds)}`;
}
