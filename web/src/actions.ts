// Forms and buttons that send something to the server: the button is disabled while the action
// runs, and a refusal is shown beside it rather than in the page's error box, so the page and
// what was typed stay as they are for another try.

import { h, type Child } from './dom.js';

function inlineError(): HTMLSpanElement {
  return h('span', { class: 'error inline', role: 'alert', hidden: true });
}

async function runShowingError(button: HTMLButtonElement, message: HTMLElement, action: () => Promise<void>): Promise<void> {
  message.hidden = true;
  button.disabled = true;
  try {
    await action();
  } catch (err) {
    message.textContent = (err as Error).message;
    message.hidden = false;
  } finally {
    button.disabled = false;
  }
}

/** A form whose submit runs `action` and shows its error beside the button. */
export function actionForm(cls: string, fields: Child[], submitLabel: string, action: () => Promise<void>): HTMLFormElement {
  const message = inlineError();
  const button = h('button', { type: 'submit' }, submitLabel);
  return h(
    'form',
    {
      class: `inline-form ${cls}`,
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        await runShowingError(button, message, action);
      },
    },
    fields,
    button,
    message,
  );
}

/** A button that runs `action` and shows its error beside itself. */
export function actionButton(label: string, cls: string, action: () => Promise<void>): HTMLElement {
  const message = inlineError();
  const button = h('button', { type: 'button', class: cls }, label);
  button.addEventListener('click', () => runShowingError(button, message, action));
  return h('span', { class: 'action' }, button, message);
}
