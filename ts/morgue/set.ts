/**
 * `morgue set <project> key=value... --filter ...`: a query with `"set": {key: value}` (POST
 * /api/query), e.g. `set blackhole state=resolved --filter=fingerprint,equal,<fp>` resolves a
 * group. `key=` (nothing after `=`) clears the value. Without a filter the change would touch every
 * object, so that needs `--all`.
 */

import { Command } from 'commander';

import { UsageError } from '../cli/errors.js';
import { addScopeOptions, queryFlagsFrom, withProject, write } from './context.js';
import { buildSetQuery } from './query.js';
import { withSpinner } from './spinner.js';

export function parseAssignments(args: string[]): Record<string, string | null> {
  const set: Record<string, string | null> = {};
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq <= 0) throw new UsageError(`"${arg}" is not key=value`);
    const value = arg.slice(eq + 1);
    set[arg.slice(0, eq)] = value === '' ? null : value;
  }
  return set;
}

export async function set(projectArg: string, assignments: string[], opts: Record<string, unknown> & { all?: boolean; json?: boolean }): Promise<void> {
  const values = parseAssignments(assignments);
  const flags = queryFlagsFrom(opts);
  const scoped = (flags.filter?.length ?? 0) > 0 || flags.fingerprint !== undefined || flags.age !== undefined || flags.time !== undefined;
  if (!scoped && !opts.all) {
    throw new UsageError('without --filter (or --fingerprint, --age, --time) this sets the value on every object; add --all if that is what you want');
  }
  const query = buildSetQuery(flags, values);
  await withProject(projectArg, async (client, ref) => {
    const answer = await withSpinner(
      `Updating ${ref.universe}/${ref.project}`,
      client.postJson('/api/query', [
        ['universe', ref.universe],
        ['project', ref.project],
      ], query),
    );
    if (opts.json) {
      write(`${JSON.stringify(answer, null, 2)}\n`);
      return;
    }
    const response = answer.response as Record<string, unknown> | undefined;
    const result = response?.result;
    if (result !== undefined && result !== 'success') {
      write(`result: ${JSON.stringify(response)}\n`);
      return;
    }
    const objects = response?.objects;
    write(typeof objects === 'number' ? `Success: ${objects} object${objects === 1 ? '' : 's'} updated.\n` : 'Success.\n');
  });
}

export function setCommand(): Command {
  const command = new Command('set')
    .description('set attributes (or a group state) on the objects a filter selects')
    .argument('<project>', '[universe/]project')
    .argument('<key=value...>', 'what to set; key= clears it');
  addScopeOptions(command)
    .option('--all', 'apply to every object of the project')
    .option('--json', "print the server's answer as JSON")
    .action(set);
  return command;
}
