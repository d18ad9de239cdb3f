/** `morgue describe <project> [substring]`: the project's attributes (POST /api/query?action=describe). */

import { Command } from 'commander';

import { withProject, write } from './context.js';
import { ServerError } from './errors.js';
import { type DescribedAttribute, paletteFor, renderDescribe, sortDescribe } from './render.js';
import { withSpinner } from './spinner.js';

export async function describe(projectArg: string, substring: string | undefined, opts: { json?: boolean; all?: boolean }): Promise<void> {
  await withProject(projectArg, async (client, ref) => {
    const answer = await withSpinner(
      `Describing ${ref.universe}/${ref.project}`,
      client.postJson(
        '/api/query',
        [
          ['action', 'describe'],
          ['universe', ref.universe],
          ['project', ref.project],
          ['disabled', 'false'],
        ],
        {},
      ),
    );
    const attributes = answer.describe;
    if (!Array.isArray(attributes) || attributes.some((a) => typeof a?.name !== 'string')) {
      throw new ServerError('the describe response has no "describe" list of named attributes', 200);
    }
    const described = attributes as DescribedAttribute[];
    if (opts.json) {
      const wanted = sortDescribe(described).filter((a) => !substring || a.name.toLowerCase().includes(substring.toLowerCase()));
      write(`${JSON.stringify(wanted, null, 2)}\n`);
      return;
    }
    write(renderDescribe(described, { filter: substring, all: opts.all, palette: paletteFor(process.stdout) }));
  });
}

export function describeCommand(): Command {
  return new Command('describe')
    .description("list a project's attributes (name, description, format)")
    .argument('<project>', '[universe/]project')
    .argument('[substring]', 'only attributes whose name contains this')
    .option('-a, --all', 'also list built-in attributes no object uses')
    .option('--json', 'print the attributes as JSON')
    .action(describe);
}
