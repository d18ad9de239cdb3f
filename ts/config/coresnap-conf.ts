/**
 * `coresnap.conf`: where it is, what its keys mean, and the checked configuration coresnapd,
 * `coresnap install` and `coresnap list` run on.
 *
 * Where: `-c FILE`, else `$CORESNAP_CONF`, else `/usr/local/etc/coresnap/coresnap.conf`, else
 * `/etc/coresnap/coresnap.conf`, else built-in defaults. Keys stand at the top of the file or
 * under `[daemon]` (the same key in both: the later line wins). Every problem names
 * `file:line: problem`; a configuration with a problem is refused as a whole (coresnapd then
 * keeps its last good one).
 *
 * The client configuration (`coroner.cf`: server and tokens) is `$CORONER_CF`, else the
 * `coroner.cf` key, else `/usr/local/etc/coroner.cf`. Each routing rule's project must have a
 * token there.
 */

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { type CoronerConfig, DEFAULT_CORONER_CF, loadCoronerCf } from './coroner-cf.js';
import { scanIni } from './ini-lines.js';
import { ConfigError, type ConfigProblem } from './problems.js';
import { parseBoolean, parseDuration, parseQuota, type Quota } from './units.js';

export const CONFIG_SEARCH_PATH = ['/usr/local/etc/coresnap/coresnap.conf', '/etc/coresnap/coresnap.conf'] as const;
export const DEFAULT_ARCHIVE = '/var/coresnap/archive';
export const DEFAULT_PROJECT = 'blackhole';
/** kernel.core_pipe_limit: handlers running at once before the kernel skips dumps. */
export const DEFAULT_PIPE_LIMIT = 64;
export const DEFAULTS_COMMAND_SEARCH = ['/usr/local/etc/coresnap/defaults', '/etc/coresnap/defaults'] as const;
/** Environment names the handler copies by default (never secrets). */
export const DEFAULT_ENV_ALLOWLIST = ['LANG', 'LC_ALL', 'TZ', 'GOTRACEBACK', 'GOMAXPROCS', 'LD_LIBRARY_PATH', 'LD_PRELOAD'];

/** `format.N = <project> %e <regex>` (or `<project>` alone: the catch-all). */
export interface RouteRule {
  project: string;
  /** Matched against the executable's full path; null matches everything. */
  pattern: RegExp | null;
  /** The rule as written, and where. */
  text: string;
  line: number;
}

export interface CoresnapConfig {
  /** The file read, or null when none exists (built-in defaults). */
  file: string | null;
  archivePath: string;
  routes: RouteRule[];
  coronerCfPath: string;
  coroner: CoronerConfig | null;
  dumpQuota: Quota | null;
  /** `dump.ignore_limit`: spool cores of processes whose `ulimit -c` is 0. */
  ignoreCoreLimit: boolean;
  /** `dump.rate = N/<duration>`: per executable; burst 0 means no limit. */
  rateBurst: number;
  rateWindowSeconds: number;
  /** `dump.pipe_limit`: the kernel.core_pipe_limit install sets. */
  pipeLimit: number;
  envAllowlist: string[];
  /** `capture.only`: spool only executables under this folder ... */
  captureOnly: string | null;
  /** ... and give the others core_pattern `core` (`core`) or nothing (`drop`). */
  captureOthers: 'core' | 'drop';
  purgeAgeSeconds: number | null;
  purgeDisabled: boolean;
  /** The defaults program: explicit, or the first of DEFAULTS_COMMAND_SEARCH that exists. */
  defaultsCommand: string | null;
  defaultsTimeoutSeconds: number;
  concurrency: number;
  /** The unprivileged user ptrace runs as (`root` or the daemon's own user: no switch). */
  user: string;
  ptracePath: string | null;
  ptraceTimeoutSeconds: number;
  uploadTimeoutSeconds: number;
  backoffInitialSeconds: number;
  backoffMaxSeconds: number;
  /** How often the daemon rescans pending/ and sending/ without being poked. */
  scanIntervalSeconds: number;
  /** Problems that do not stop the daemon (unknown keys), as `file:line: problem`. */
  warnings: string[];
}

export interface LoadOptions {
  /** `-c FILE`. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Skip reading coroner.cf (for commands that only need the archive: list, retry). */
  withoutCoroner?: boolean;
}

/** Which coresnap.conf applies, or null for none. */
export function findConfigFile(options: LoadOptions = {}): string | null {
  const env = options.env ?? process.env;
  if (options.file) return path.resolve(options.file);
  if (env.CORESNAP_CONF) return path.resolve(env.CORESNAP_CONF);
  return CONFIG_SEARCH_PATH.find((candidate) => existsSync(candidate)) ?? null;
}

type Setter = (value: string, line: number) => string | null;

/** Parses coresnap.conf text. Throws ConfigError listing every problem. */
export function parseCoresnapConf(text: string, file: string | null, options: LoadOptions = {}): CoresnapConfig {
  const env = options.env ?? process.env;
  const name = file ?? '(built-in defaults)';
  const scanned = scanIni(text);
  const problems: ConfigProblem[] = scanned.problems.map((p) => ({ file: name, ...p }));
  const warnings: string[] = [];
  const config: CoresnapConfig = {
    file,
    archivePath: DEFAULT_ARCHIVE,
    routes: [],
    coronerCfPath: DEFAULT_CORONER_CF,
    coroner: null,
    dumpQuota: null,
    ignoreCoreLimit: false,
    rateBurst: 10,
    rateWindowSeconds: 60,
    pipeLimit: DEFAULT_PIPE_LIMIT,
    envAllowlist: [...DEFAULT_ENV_ALLOWLIST],
    captureOnly: null,
    captureOthers: 'core',
    purgeAgeSeconds: null,
    purgeDisabled: false,
    defaultsCommand: null,
    defaultsTimeoutSeconds: 10,
    concurrency: 1,
    user: 'coresnap',
    ptracePath: null,
    ptraceTimeoutSeconds: 300,
    uploadTimeoutSeconds: 60,
    backoffInitialSeconds: 1,
    backoffMaxSeconds: 600,
    scanIntervalSeconds: 30,
    warnings,
  };
  let defaultsCommandSet = false;
  let coronerCfKey: string | null = null;
  const rules: { n: number; order: number; value: string; line: number }[] = [];

  const duration = (key: string, set: (seconds: number) => void, allowZero = false): Setter => (value) => {
    const seconds = parseDuration(value);
    if (seconds === null || (!allowZero && seconds <= 0)) return `${key} = ${value}: expected <N><s|m|h|d|w|M>, like 1d or 30s`;
    set(seconds);
    return null;
  };
  const positive = (key: string, set: (n: number) => void): Setter => (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) return `${key} = ${value}: expected a whole number of at least 1`;
    set(n);
    return null;
  };
  const boolean = (key: string, set: (b: boolean) => void): Setter => (value) => {
    const b = parseBoolean(value);
    if (b === null) return `${key} = ${value}: expected true or false`;
    set(b);
    return null;
  };
  const absolutePath = (key: string, set: (p: string) => void): Setter => (value) => {
    if (!path.isAbsolute(value)) return `${key} = ${value}: expected an absolute path`;
    set(path.normalize(value));
    return null;
  };

  const setters: Record<string, Setter> = {
    'archive.path': absolutePath('archive.path', (p) => (config.archivePath = p.replace(/\/+$/, '') || '/')),
    'coroner.cf': absolutePath('coroner.cf', (p) => (coronerCfKey = p)),
    'dump.quota': (value) => {
      if (value === 'none' || value === '') {
        config.dumpQuota = null;
        return null;
      }
      const quota = parseQuota(value);
      if (!quota) return `dump.quota = ${value}: expected a percentage of the file system (10%) or a size (500M)`;
      config.dumpQuota = quota;
      return null;
    },
    'dump.ignore_limit': boolean('dump.ignore_limit', (b) => (config.ignoreCoreLimit = b)),
    'dump.rate': (value) => {
      if (value === '0' || value === 'none') {
        config.rateBurst = 0;
        return null;
      }
      const match = /^(\d+)\s*\/\s*(.+)$/.exec(value);
      const seconds = match ? parseDuration(match[2] ?? '') : null;
      if (!match || seconds === null || seconds <= 0) return `dump.rate = ${value}: expected <count>/<duration>, like 10/1m (or 0 for no limit)`;
      config.rateBurst = Number(match[1]);
      config.rateWindowSeconds = Math.max(1, Math.round(seconds));
      return null;
    },
    'dump.pipe_limit': positive('dump.pipe_limit', (n) => (config.pipeLimit = n)),
    'capture.env': (value) => {
      const names = value.split(/[\s,]+/).filter(Boolean);
      const bad = names.find((n) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(n));
      if (bad) return `capture.env: "${bad}" is not an environment variable name`;
      config.envAllowlist = names;
      return null;
    },
    'capture.only': absolutePath('capture.only', (p) => (config.captureOnly = p)),
    'capture.others': (value) => {
      if (value !== 'core' && value !== 'drop') return `capture.others = ${value}: expected core or drop`;
      config.captureOthers = value;
      return null;
    },
    'purge.age': duration('purge.age', (s) => (config.purgeAgeSeconds = s)),
    'purge.disabled': boolean('purge.disabled', (b) => (config.purgeDisabled = b)),
    'defaults.command': (value) => {
      defaultsCommandSet = true;
      if (value === '' || value === 'none') {
        config.defaultsCommand = null;
        return null;
      }
      if (!path.isAbsolute(value)) return `defaults.command = ${value}: expected an absolute path`;
      config.defaultsCommand = value;
      return null;
    },
    'defaults.timeout': duration('defaults.timeout', (s) => (config.defaultsTimeoutSeconds = s)),
    concurrency: positive('concurrency', (n) => (config.concurrency = n)),
    user: (value) => {
      if (!/^[a-z_][a-z0-9_-]*\$?$/i.test(value)) return `user = ${value}: not a user name`;
      config.user = value;
      return null;
    },
    'ptrace.path': absolutePath('ptrace.path', (p) => (config.ptracePath = p)),
    'ptrace.timeout': duration('ptrace.timeout', (s) => (config.ptraceTimeoutSeconds = s)),
    'upload.timeout': duration('upload.timeout', (s) => (config.uploadTimeoutSeconds = s)),
    'upload.backoff.initial': duration('upload.backoff.initial', (s) => (config.backoffInitialSeconds = s)),
    'upload.backoff.max': duration('upload.backoff.max', (s) => (config.backoffMaxSeconds = s)),
    'scan.interval': duration('scan.interval', (s) => (config.scanIntervalSeconds = s)),
  };

  let order = 0;
  for (const entry of scanned.entries) {
    if (entry.section !== '' && entry.section !== 'daemon') {
      warnings.push(`${name}:${entry.line}: [${entry.section}] is not a coresnap.conf section; ${entry.key} ignored`);
      continue;
    }
    const format = /^format\.(\d+)$/.exec(entry.key);
    if (format) {
      rules.push({ n: Number(format[1]), order: order++, value: entry.value, line: entry.line });
      continue;
    }
    const setter = setters[entry.key];
    if (!setter) {
      warnings.push(`${name}:${entry.line}: unknown key ${entry.key} (ignored)`);
      continue;
    }
    const problem = setter(entry.value, entry.line);
    if (problem) problems.push({ file: name, line: entry.line, message: problem });
  }

  // format.N rules in N order, then file order; the first that matches wins.
  rules.sort((a, b) => a.n - b.n || a.order - b.order);
  for (const rule of rules) {
    const match = /^(\S+)(?:\s+(.*))?$/.exec(rule.value);
    if (!match) {
      problems.push({ file: name, line: rule.line, message: 'format rule is empty; expected <project> %e <regex>, or <project> alone' });
      continue;
    }
    const project = match[1] ?? '';
    const rest = (match[2] ?? '').trim();
    if (rest === '') {
      config.routes.push({ project, pattern: null, text: rule.value, line: rule.line });
      continue;
    }
    const field = /^(%\S+)\s+(.+)$/.exec(rest);
    if (!field) {
      problems.push({ file: name, line: rule.line, message: `format rule "${rule.value}": expected <project> %e <regex>` });
      continue;
    }
    if (field[1] !== '%e') {
      problems.push({ file: name, line: rule.line, message: `format rule "${rule.value}": only %e (the executable's path) can be matched, not ${field[1]}` });
      continue;
    }
    try {
      config.routes.push({ project, pattern: new RegExp(field[2] ?? ''), text: rule.value, line: rule.line });
    } catch (err) {
      problems.push({ file: name, line: rule.line, message: `format rule "${rule.value}": the regular expression is invalid (${(err as Error).message})` });
    }
  }
  if (config.routes.length === 0) {
    config.routes.push({ project: DEFAULT_PROJECT, pattern: null, text: `${DEFAULT_PROJECT} (default)`, line: 0 });
  }

  if (!defaultsCommandSet) config.defaultsCommand = DEFAULTS_COMMAND_SEARCH.find((p) => existsSync(p)) ?? null;
  config.coronerCfPath = env.CORONER_CF ? path.resolve(env.CORONER_CF) : coronerCfKey ?? DEFAULT_CORONER_CF;

  if (!options.withoutCoroner && problems.length === 0) {
    try {
      config.coroner = loadCoronerCf(config.coronerCfPath);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
    const coroner = config.coroner;
    if (coroner) {
      for (const route of config.routes) {
        if (coroner.tokens.has(route.project)) continue;
        problems.push({
          file: route.line > 0 ? name : coroner.file,
          line: route.line,
          message:
            route.line > 0
              ? `project ${route.project} has no token in ${coroner.file} (add "${route.project} = <token>" under [tokens])`
              : `no format rule is set, and the default project ${route.project} has no token here (add "${route.project} = <token>" under [tokens])`,
        });
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Finds and parses coresnap.conf (built-in defaults when there is none). */
export function loadCoresnapConfig(options: LoadOptions = {}): CoresnapConfig {
  const file = findConfigFile(options);
  if (file === null) return parseCoresnapConf('', null, options);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, line: 0, message: `cannot be read: ${(err as Error).message}` }]);
  }
  return parseCoresnapConf(text, file, options);
}

/** The project for an executable's full path: the first rule that matches, or null. */
export function routeFor(config: Pick<CoresnapConfig, 'routes'>, executable: string): RouteRule | null {
  return config.routes.find((rule) => rule.pattern === null || rule.pattern.test(executable)) ?? null;
}
