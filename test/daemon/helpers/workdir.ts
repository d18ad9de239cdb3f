/**
 * The setup most daemon test files open with: their own test folder with the crashing C program
 * built in it, removed once the file's tests are done (pass or fail).
 */

import fs from 'node:fs';

import test from 'ava';

import { compileCrash, testDir } from './env.js';

export function crashWorkdir(): { root: string; exe: string } {
  const root = testDir();
  test.after.always(() => fs.rmSync(root, { recursive: true, force: true }));
  return { root, exe: compileCrash(root) };
}
