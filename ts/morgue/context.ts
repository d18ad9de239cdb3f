/**
 * What the commands share: the session's client, the query flags (declared once, so list, set and
 * delete spell them the same), and writing to stdout.
 */

import type { Command } from 'commander';

import { CoronerClient } from './client.js';
import { FOLD_OPERATORS, type FoldOperator, type QueryFlags } from './query.js';
import { type ProjectRef, requireSession, resolveProject, type Session } from './session.js';

export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function write(text: string): void {
  process.stdout.write(text);
}

export function clientFor(session: Session): CoronerClient {
  return new CoronerClient({ endpoint: session.endpoint, token: session.config.token });
}

/** Runs `work` with a client of the saved session and the project argument resolved, closing the client after. */
export async function withProject<T>(projectArg: string, work: (client: CoronerClient, ref: ProjectRef, session: Session) => Promise<T>): Promise<T> {
  const session = requireSession();
  const ref = resolveProject(projectArg, session);
  const client = clientFor(session);
  try {
    return await work(client, ref, session);
  } finally {
    await client.close();
  }
}

/** The flags that narrow which objects a command applies to. */
export function addScopeOptions(command: Command): Command {
  return command
    .option('--filter <attr,op[,value]>', 'keep objects where attr op value holds (repeatable; op is one of equal, not-equal, regular-expression, inverse-regular-expression, contains, not-contains, at-least, at-most, greater-than, less-than, is-set, is-not-set)', collect)
    .option('--age <age>', 'only objects newer than this (units y M w d h m s; M is 30 days)')
    .option('--time <range>', 'only objects in this range: "<start> to <end>" (unix seconds, ISO dates, now, "<age> ago")')
    .option('--fingerprint <hex>', 'only this group (64 hex digits), or groups whose fingerprint starts so');
}

/** The flags of a list query: scope, selection, folds, grouping, sorting, paging. */
export function addListOptions(command: Command): Command {
  addScopeOptions(command)
    .option('--select <attr>', 'list objects, showing this attribute (repeatable)', collect)
    .option('--select-wildcard <kind>', 'list objects with every attribute of this kind: physical, derived or virtual (repeatable)', collect)
    .option('--factor <attr>', 'one group per value of attr')
    .option('--sort <[-]term>', 'order by a column or fold term (;count, ;group, attr;idx); - for descending (repeatable)', collect)
    .option('--limit <n>', 'at most n groups or objects')
    .option('--offset <n>', 'skip the first n groups or objects');
  for (const op of FOLD_OPERATORS) {
    command.option(`--${op} <attr[,n...]>`, foldHelp(op), collect);
  }
  return command;
}

function foldHelp(op: FoldOperator): string {
  const what: Record<FoldOperator, string> = {
    last: 'the last value seen',
    first: 'the first value seen',
    tail: 'the value of the newest object',
    head: 'the value of the oldest object',
    object: 'an object id of the group',
    histogram: 'each value with its count, as bars',
    distribution: 'the n most common values (attr,n)',
    unique: 'how many distinct values',
    mean: 'the mean',
    min: 'the smallest value',
    max: 'the largest value',
    sum: 'the sum',
    bin: 'counts per range of values (attr[,bins,lo,hi])',
    range: 'the smallest and largest values',
    count: 'how many objects have a value',
  };
  return `fold: ${what[op]} (repeatable)`;
}

export function queryFlagsFrom(opts: Record<string, unknown>): QueryFlags {
  const folds: Partial<Record<FoldOperator, string[]>> = {};
  for (const op of FOLD_OPERATORS) {
    const v = opts[op];
    if (Array.isArray(v)) folds[op] = v as string[];
  }
  return {
    filter: opts.filter as string[] | undefined,
    age: opts.age as string | undefined,
    time: opts.time as string | undefined,
    fingerprint: opts.fingerprint as string | undefined,
    select: opts.select as string[] | undefined,
    selectWildcard: opts.selectWildcard as string[] | undefined,
    factor: opts.factor as string | undefined,
    sort: opts.sort as string[] | undefined,
    limit: opts.limit as string | undefined,
    offset: opts.offset as string | undefined,
    folds,
  };
}
