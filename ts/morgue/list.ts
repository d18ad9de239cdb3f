/**
 * `morgue list <[universe/]project>`: one query (POST /api/query, see query.ts for the JSON), then
 * the groups as the vendor guide shows them (render.ts) and the footer
 * `user: universe/project as of 1M ago [latency]`. --query prints the request (and stops, unless
 * --raw), --raw the whole response, --json the unpacked result, --csv a table.
 */

import { writeFileSync } from 'node:fs';

import { Command } from 'commander';

import { addListOptions, queryFlagsFrom, withProject, write } from './context.js';
import { buildListQuery } from './query.js';
import { paletteFor, renderFooter, renderList, toCsv } from './render.js';
import { asQueryResult, toUnpackedJson, unpack } from './response.js';
import { withSpinner } from './spinner.js';

interface OutputOptions {
  query?: boolean;
  raw?: boolean;
  json?: boolean;
  csv?: string | boolean;
}

export async function list(projectArg: string, opts: Record<string, unknown> & OutputOptions): Promise<void> {
  const built = buildListQuery(queryFlagsFrom(opts));
  if (opts.query) {
    write(`${JSON.stringify(built.query)}\n`);
    if (!opts.raw) return;
  }
  await withProject(projectArg, async (client, ref) => {
    const answer = await withSpinner(
      `Querying ${ref.universe}/${ref.project}`,
      client.postJson('/api/query', [
        ['universe', ref.universe],
        ['project', ref.project],
      ], built.query),
    );
    if (opts.raw) {
      write(`${JSON.stringify(answer)}\n`);
      return;
    }
    const result = asQueryResult(answer);
    const unpacked = unpack(result.response);
    if (opts.json) {
      write(`${JSON.stringify(toUnpackedJson(unpacked), null, 2)}\n`);
      return;
    }
    const palette = paletteFor(process.stdout);
    if (opts.csv !== undefined && opts.csv !== false) {
      const csv = toCsv(unpacked);
      if (typeof opts.csv === 'string' && opts.csv !== '-') {
        writeFileSync(opts.csv, csv);
        const rows = csv.split('\n').length - 2;
        write(`Wrote ${rows} row${rows === 1 ? '' : 's'} to ${opts.csv}.\n`);
        write(`${renderFooter(result._, built.timeLabel, palette)}\n`);
      } else {
        write(csv);
      }
      return;
    }
    write(
      renderList(unpacked, {
        palette,
        totalRows: result._.runtime?.filter?.rows,
        grouped: built.query.group !== undefined,
      }),
    );
    write(`${renderFooter(result._, built.timeLabel, palette)}\n`);
  });
}

export function listCommand(): Command {
  const command = new Command('list')
    .description('query a project: groups with their time line and folds, or objects with --select')
    .argument('<project>', '[universe/]project');
  addListOptions(command)
    .option('--query', 'print the query JSON instead of sending it (with --raw: print it, then send it)')
    .option('--raw', 'print the raw response JSON')
    .option('--json', 'print the unpacked result as JSON')
    .option('--csv [file]', 'print the result as CSV (to a file with --csv=FILE)')
    .action(list);
  return command;
}
