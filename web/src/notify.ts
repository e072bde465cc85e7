/**
 * Desktop notifications for messages that arrive while the page is open but
 * hidden (another tab, minimised). The browser asks for the permission only
 * on a user gesture: the button in the bar, shown while it has not been
 * given or refused.
 */
import { h } from './dom.js'
import type { Strings } from './strings.js'

const supported = (): boolean => typeof Notification === 'function'

export class Notifier {
  readonly button: HTMLButtonElement

  constructor (t: Strings, private readonly open: (conv: string) => void) {
    this.button = h('button', { type: 'button', class: 'notify', id: 'notify' }, t.notifyOn)
    this.button.hidden = !supported() || Notification.permission !== 'default'
    this.button.addEventListener('click', () => {
      void Notification.requestPermission().then(() => { this.button.hidden = Notification.permission !== 'default' })
    })
  }

  /** Shown only when the page is hidden and the user allowed it. */
  message (conv: string, title: string, text: string): void {
    if (!supported() || Notification.permission !== 'granted' || document.visibilityState !== 'hidden') return
    const n = new Notification(title, { body: text.slice(0, 200), tag: conv })
    n.onclick = () => { window.focus(); this.open(conv); n.close() }
  }
}
