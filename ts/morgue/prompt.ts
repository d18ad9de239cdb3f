/**
 * Username and password from the terminal: the name echoed, the password not. Only used when
 * stdin is a TTY; elsewhere login takes MORGUE_USERNAME/MORGUE_PASSWORD or --token.
 *
 * One readline interface asks both questions, so a pasted "name⏎password⏎" is not lost between
 * them; end of input or Ctrl-C before both answers is an error, never an empty password.
 */

import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';

import { UsageError } from '../cli/errors.js';

export async function promptCredentials(defaultUser?: string): Promise<{ username: string; password: string }> {
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  let pending: { resolve(answer: string): void; reject(err: Error): void } | undefined;
  const answers: string[] = [];
  rl.on('line', (line) => {
    if (pending) {
      const p = pending;
      pending = undefined;
      p.resolve(line);
    } else {
      answers.push(line);
    }
  });
  const ended = (why: string) => () => {
    pending?.reject(new UsageError(`login ${why} before a username and password were given`));
    pending = undefined;
  };
  rl.on('close', ended('ended'));
  rl.on('SIGINT', () => {
    process.stderr.write('\n');
    ended('was interrupted')();
    rl.close();
  });
  const ask = (question: string, hidden: boolean): Promise<string> => {
    muted = false;
    process.stderr.write(question);
    muted = hidden;
    const early = answers.shift();
    if (early !== undefined) return Promise.resolve(early);
    return new Promise((resolve, reject) => {
      pending = { resolve, reject };
    });
  };
  try {
    const typed = await ask(defaultUser ? `User [${defaultUser}]: ` : 'User: ', false);
    const password = await ask('Password: ', true);
    muted = false;
    process.stderr.write('\n');
    return { username: typed.trim() || defaultUser || '', password };
  } finally {
    muted = false;
    rl.close();
  }
}
