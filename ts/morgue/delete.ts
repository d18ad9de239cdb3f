/**
 * `morgue delete <project> [object...] [--filter ...]`: POST /api/delete?universe= with
 * `{universe, project, objects: [hex...], subsets: ["physical"]}`, or with `query` instead of
 * `objects` when filters are given (the server deletes what the query selects).
 */

import { Command } from 'commander';

import { UsageError } from '../cli/errors.js';
import { addScopeOptions, collect, queryFlagsFrom, withProject, write } from './context.js';
import { normalizeObjectId } from './get.js';
import { buildFilterOnlyQuery } from './query.js';
import { withSpinner } from './spinner.js';

interface DeleteOptions extends Record<string, unknown> {
  all?: boolean;
  crdbOnly?: boolean;
  sync?: boolean;
  json?: boolean;
}

export async function deleteObjects(projectArg: string, objectArgs: string[], opts: DeleteOptions): Promise<void> {
  const query = buildFilterOnlyQuery(queryFlagsFrom(opts));
  const objects = objectArgs.map(normalizeObjectId);
  if (objects.length === 0 && !query) throw new UsageError('name the objects to delete, or select them with --filter/--fingerprint/--age/--time');
  if (objects.length > 0 && query) throw new UsageError('give either objects or a filter, not both');
  await withProject(projectArg, async (client, ref) => {
    const body: Record<string, unknown> = { universe: ref.universe, project: ref.project };
    if (query) body.query = query;
    else body.objects = objects;
    if (!opts.all) body.subsets = [opts.crdbOnly ? 'crdb' : 'physical'];
    if (opts.sync) body.sync = true;
    const what = query ? 'the objects the filter selects' : `${objects.length} object${objects.length === 1 ? '' : 's'}`;
    const answer = await withSpinner(`Deleting ${what}`, client.postJson('/api/delete', [['universe', ref.universe]], body));
    if (opts.json) write(`${JSON.stringify(answer, null, 2)}\n`);
    else {
      const response = answer.response;
      const count = typeof answer.objects === 'number' ? answer.objects : typeof (response as { objects?: unknown } | undefined)?.objects === 'number' ? (response as { objects: number }).objects : undefined;
      const done = count !== undefined ? `${count} object${count === 1 ? '' : 's'}` : what;
      write(`Deleted ${done} from ${ref.universe}/${ref.project}.\n`);
    }
  });
}

export function deleteCommand(): Command {
  const command = new Command('delete')
    .description('delete objects, by id or by filter')
    .argument('<project>', '[universe/]project')
    .argument('[object...]', 'object ids in hex');
  addScopeOptions(command)
    .option('--select <attr>', 'with a filter: what the server selects (default: object)', collect)
    .option('--all', 'delete everything of each object (not only its stored data)')
    .option('--crdb-only', 'delete only the indexed attributes, keep the stored data')
    .option('--sync', 'wait until the deletion is done')
    .option('--json', "print the server's answer as JSON")
    .action(deleteObjects);
  return command;
}
