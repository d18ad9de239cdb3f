/** `coroner grouping show|set|explain`: a project's grouping rules, and why a report got its fingerprint. */

import fs from 'node:fs';
import type { Command } from 'commander';
import { requireProject } from '../coroner/admin.js';
import { CompiledGroupingRules, explainFingerprint } from '../grouping/fingerprint.js';
import { DEFAULT_GROUPING_RULES, parseGroupingRules } from '../grouping/rules.js';
import { InputError } from './errors.js';
import { print, storeOptions, withStore, type StoreOptions } from './coroner-common.js';

function readJson(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InputError(`${file} is not JSON: ${(err as Error).message}`);
  }
}

export function registerGrouping(program: Command): void {
  const grouping = program.command('grouping').description("a project's grouping rules and fingerprint explanations");

  storeOptions(grouping.command('show <project>').description('print the grouping rules in force (JSON)')).action(async (project: string, opts: StoreOptions) => {
    const current = await withStore(opts, async (store, universe) => {
      const p = await requireProject(store, universe, project);
      const { version, rules } = await store.getGroupingRules(p.id);
      return { project, version, custom: rules !== null, rules: parseGroupingRules(rules) };
    });
    process.stdout.write(`${JSON.stringify(current, null, 2)}\n`);
  });

  storeOptions(grouping.command('set <project> <rules.json>').description('store a new version of the grouping rules (fields left out keep the defaults)'))
    .action(async (project: string, file: string, opts: StoreOptions) => {
      const rules = parseGroupingRules(readJson(file));
      const result = await withStore(opts, async (store, universe) => {
        const p = await requireProject(store, universe, project);
        return store.setGroupingRules(p.id, rules);
      });
      print(opts, { project, ...result }, (r) => [`grouping rules of ${r.project} are now version ${r.version}`]);
    });

  storeOptions(grouping.command('explain <report.json>').description("explain a report's fingerprint, frame by frame"))
    .option('--project <name>', "use this project's rules (default: the built-in rules, no data folder needed)")
    .action(async (file: string, opts: StoreOptions & { project?: string }) => {
      const report = readJson(file);
      if (typeof report !== 'object' || report === null || Array.isArray(report)) throw new InputError(`${file} is not a JSON object`);
      const compiled = opts.project
        ? await withStore(opts, async (store, universe) => {
            const p = await requireProject(store, universe, opts.project!);
            return CompiledGroupingRules.fromStored(await store.getGroupingRules(p.id));
          })
        : new CompiledGroupingRules(DEFAULT_GROUPING_RULES, 0);
      const e = explainFingerprint(report as Record<string, unknown>, compiled);
      print(opts, e, (x) => [
        `fingerprint ${x.fingerprint} (${x.source === 'sdk' ? "the report's own" : `rules version ${x.rulesVersion}`})`,
        `kind ${x.kind ?? '(none)'}${x.kindFrom ? ` from ${x.kindFrom}` : ''}; thread ${x.thread ?? '(none)'}`,
        ...x.frames.map((f) => `  ${f.used ? '+' : '-'} #${f.index} ${f.name}  — ${f.reason}`),
      ]);
    });
}
