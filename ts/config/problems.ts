/** Configuration problems: each names its file and line, so the user can go straight there. */

export interface ConfigProblem {
  file: string;
  /** 1-based; 0 when the problem is the file as a whole. */
  line: number;
  message: string;
}

export function formatProblem(problem: ConfigProblem): string {
  return problem.line > 0 ? `${problem.file}:${problem.line}: ${problem.message}` : `${problem.file}: ${problem.message}`;
}

/** One or more problems that make a configuration unusable; the message lists them all. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}
