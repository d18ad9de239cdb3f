/**
 * The spinner shown while waiting on the server: only on a terminal (stdout and stderr both TTYs,
 * so pipes and scripts never see it; not with CI or MORGUE_NO_SPINNER set), only after a moment
 * has passed (quick answers stay quiet), drawn on stderr, and always cleared before the answer is
 * printed.
 */

import ora from 'ora';

export const SPINNER_DELAY_MS = 250;

export function spinnerEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  // A terminal that reports no width (some ptys, serial consoles) makes ora's line clearing loop
  // without end; no spinner is better there.
  const width = process.stderr.columns ?? 0;
  return Boolean(process.stdout.isTTY && process.stderr.isTTY) && width > 0 && !env.CI && env.MORGUE_NO_SPINNER === undefined;
}

/** Awaits `work`, spinning with `text` if it takes longer than [[SPINNER_DELAY_MS]]. */
export async function withSpinner<T>(text: string, work: Promise<T>, enabled: boolean = spinnerEnabled()): Promise<T> {
  if (!enabled) return work;
  const spinner = ora({ text, stream: process.stderr, discardStdin: false });
  const timer = setTimeout(() => spinner.start(), SPINNER_DELAY_MS);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
    if (spinner.isSpinning) spinner.stop();
  }
}
