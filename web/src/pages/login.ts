import { login, session } from '../api.js';
import { h } from '../dom.js';
import type { PageContext } from '../main.js';

export async function loginPage(ctx: PageContext): Promise<void> {
  const next = ctx.route.params.get('next');
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const message = h('p', { class: 'error', role: 'alert', hidden: true });
  const form = h(
    'form',
    {
      class: 'login card',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        message.hidden = true;
        try {
          await login(user.value, pass.value);
          location.hash = next && next.startsWith('/') && next !== '/login' ? `#${next}` : '#/';
        } catch (err) {
          message.textContent = (err as Error).message;
          message.hidden = false;
        }
      },
    },
    h('h1', null, 'Log in to coresnap'),
    session() ? h('p', { class: 'muted' }, `You are logged in as ${session()!.user.username}.`) : null,
    h('label', null, 'Username', user),
    h('label', null, 'Password', pass),
    message,
    h('button', { type: 'submit' }, 'Log in'),
  );
  ctx.main.append(form);
}
