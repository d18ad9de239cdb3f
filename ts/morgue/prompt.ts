/**
 * Username and password from the terminal: the name echoed, the password not. Only used when
 * stdin is a TTY; elsewhere login takes MORGUE_USERNAME/MORGUE_PASSWORD or --token.
 */

import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';

function ask(question: string, hidden: boolean): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve, reject) => {
    rl.on('SIGINT', () => {
      rl.close();
      process.stderr.write('\n');
      reject(new Error('canceled'));
    });
    rl.question(question, (answer) => {
      rl.close();
      if (hidden) process.stderr.write('\n');
      resolve(answer);
    });
    muted = hidden;
  });
}

export async function promptCredentials(defaultUser?: string): Promise<{ username: string; password: string }> {
  const typed = await ask(defaultUser ? `User [${defaultUser}]: ` : 'User: ', false);
  const username = typed.trim() || defaultUser || '';
  const password = await ask('Password: ', true);
  return { username, password };
}
