/**
 * The coroner client configuration (`coroner.cf`) as coresnapd needs it: where to submit
 * (`[universe] write = http(s)://host:port`) and the submission token of each project
 * (`[tokens] <project> = <token>`; `[token]` is accepted too, backtrace-compat.md §5).
 */

import { readFileSync } from 'node:fs';

import { scanIni } from './ini-lines.js';
import { ConfigError, type ConfigProblem } from './problems.js';
import { parseBoolean } from './units.js';

export const DEFAULT_CORONER_CF = '/usr/local/etc/coroner.cf';

export interface CoronerConfig {
  file: string;
  /** The submission base URL (`<write>/post?format=json&token=T`). */
  write: string;
  universe: string | null;
  /** Project (token name) → token. */
  tokens: Map<string, string>;
  /** `curl.ssl_verifypeer = false`: accept a self-signed server certificate. */
  insecure: boolean;
  /** Line of each token, for messages. */
  tokenLines: Map<string, number>;
}

export function parseCoronerCf(text: string, file: string): CoronerConfig {
  const scanned = scanIni(text);
  const problems: ConfigProblem[] = scanned.problems.map((p) => ({ file, ...p }));
  let write: string | null = null;
  let universe: string | null = null;
  let insecure = false;
  const tokens = new Map<string, string>();
  const tokenLines = new Map<string, number>();
  for (const entry of scanned.entries) {
    if (entry.section === 'universe') {
      if (entry.key === 'write') {
        try {
          const url = new URL(entry.value);
          if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
          write = entry.value.replace(/\/+$/, '');
        } catch {
          problems.push({ file, line: entry.line, message: `write = ${entry.value} is not an http:// or https:// address` });
        }
      } else if (entry.key === 'name') {
        universe = entry.value;
      } else if (entry.key === 'curl.ssl_verifypeer') {
        insecure = parseBoolean(entry.value) === false;
      }
    } else if (entry.section === 'tokens' || entry.section === 'token') {
      if (entry.value === '') {
        problems.push({ file, line: entry.line, message: `the token of ${entry.key} is empty` });
        continue;
      }
      tokens.set(entry.key, entry.value);
      tokenLines.set(entry.key, entry.line);
    }
  }
  if (write === null && !problems.some((p) => /write =/.test(p.message))) {
    problems.push({ file, line: 0, message: 'there is no [universe] write = http(s)://host:port (where to submit crashes)' });
  }
  if (problems.length > 0 || write === null) throw new ConfigError(problems);
  return { file, write, universe, tokens, insecure, tokenLines };
}

export function loadCoronerCf(file: string): CoronerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'it does not exist (the coroner client configuration, with [universe] write = and [tokens])' : (err as Error).message;
    throw new ConfigError([{ file, line: 0, message: why }]);
  }
  return parseCoronerCf(text, file);
}
