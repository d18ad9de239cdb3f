/**
 * INI with line numbers and repeated keys. The `ini` package decodes values (quotes, escapes,
 * trailing comments) but keeps only the last of a repeated key and reports no lines, and
 * coresnap.conf needs both: `format.1` repeats, and every error names its line. So this scanner
 * finds sections and `key = value` lines, in order, and hands each raw value to `ini.unsafe`.
 */

import ini from 'ini';

export interface IniEntry {
  /** The section (`''` above the first header), lower-cased. */
  section: string;
  key: string;
  value: string;
  line: number;
}

export interface IniProblem {
  line: number;
  message: string;
}

export interface ScannedIni {
  entries: IniEntry[];
  /** Every section header seen, with its line. */
  sections: { name: string; line: number }[];
  problems: IniProblem[];
}

export function scanIni(text: string): ScannedIni {
  const entries: IniEntry[] = [];
  const sections: { name: string; line: number }[] = [];
  const problems: IniProblem[] = [];
  let section = '';
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith(';') || trimmed.startsWith('#')) return;
    const header = /^\[([^\]]*)\]\s*(?:[;#].*)?$/.exec(trimmed);
    if (header) {
      section = (header[1] ?? '').trim().toLowerCase();
      sections.push({ name: section, line });
      return;
    }
    const eq = trimmed.indexOf('=');
    if (eq <= 0) {
      problems.push({ line, message: `"${trimmed}" is neither a [section] nor key = value` });
      return;
    }
    const key = trimmed.slice(0, eq).trim();
    const value = ini.unsafe(trimmed.slice(eq + 1).trim());
    entries.push({ section, key, value: value.trim(), line });
  });
  return { entries, sections, problems };
}
