/**
 * Device tokens: create one (shown once, with a QR code a phone or an ESP32
 * provisioning tool scans), list them, revoke one (admin API /tokens).
 */
import { field, h } from '../dom.js'
import type { AdminApi, NewToken, TokenRow } from './api-client.js'
import type { ConsoleStrings } from './console-strings.js'
import { qrSvg } from './qr.js'
import { button, StatusLine, table, when } from './ui.js'

/**
 * What the QR code holds: JSON with the broker's MQTT URL on the host this
 * page came from, the user name, the client id to use and the token.
 */
function provisioning (t: NewToken, host: string): { broker: string, username: string, clientId: string, token: string } {
  const broker = t.mqttsPort !== null ? `mqtts://${host}:${t.mqttsPort}` : `mqtt://${host}:${t.mqttPort ?? 1883}`
  return { broker, username: t.user, clientId: t.clientId, token: t.token }
}

export class TokensPanel {
  readonly root: HTMLElement
  private readonly list = h('div', { class: 'list' })
  private readonly created = h('div', { class: 'created', id: 'new-token' })
  private readonly status = new StatusLine('tokens-status')
  private readonly user = h('select', { id: 'token-user', name: 'token-user', required: '' })

  constructor (private readonly api: AdminApi, private readonly t: ConsoleStrings, private readonly lang: string) {
    const name = field('token-name', t.device, { autocomplete: 'off', required: '', maxlength: '64' })
    const form = h('form', { class: 'inline', id: 'add-token' },
      h('div', { class: 'field' }, h('label', { for: 'token-user' }, t.user), this.user), name.wrap, h('button', { type: 'submit' }, t.createToken))
    form.addEventListener('submit', (ev) => {
      ev.preventDefault()
      this.api.call<NewToken>('POST', 'tokens', { user: this.user.value, name: name.input.value.trim() }).then(async (tok) => {
        name.input.value = ''
        this.show(tok)
        this.status.ok('')
        await this.load()
      }).catch((err: unknown) => { this.status.fail(err, t.createToken) })
    })
    this.root = h('section', { id: 'tokens', 'aria-labelledby': 'tokens-h' }, h('h2', { id: 'tokens-h' }, t.sections.tokens), form, this.status.el, this.created, this.list)
  }

  setUsers (names: string[]): void {
    const keep = this.user.value
    this.user.replaceChildren(...names.map((n) => h('option', { value: n }, n)))
    if (names.includes(keep)) this.user.value = keep
  }

  private show (tok: NewToken): void {
    const t = this.t
    const p = provisioning(tok, location.hostname)
    const dl = h('dl', {},
      h('dt', {}, t.brokerUrl), h('dd', { id: 'new-token-broker' }, p.broker),
      h('dt', {}, t.user), h('dd', {}, p.username),
      h('dt', {}, t.clientId), h('dd', { id: 'new-token-client' }, p.clientId),
      h('dt', {}, t.token), h('dd', {}, h('code', { id: 'new-token-value' }, p.token)))
    const qr = qrSvg(JSON.stringify(p), t.tokenQr)
    qr.id = 'new-token-qr'
    this.created.replaceChildren(h('p', { class: 'warn' }, t.tokenShownOnce), h('div', { class: 'token-box' }, qr, dl))
    this.created.querySelector('code')?.focus()
  }

  async load (): Promise<void> {
    const { tokens } = await this.api.get<{ tokens: TokenRow[] }>('tokens')
    const t = this.t
    this.list.replaceChildren(table('tokens-table', ['id', t.user, t.device, t.created, t.status, t.actions], tokens.map((k) => [
      k.id, k.user, k.name, when(k.createdAt, this.lang), k.revokedAt === null ? t.active : t.revoked,
      k.revokedAt !== null
        ? ''
        : button(t.revoke, () => {
            this.api.call('DELETE', `tokens/${k.id}`).then(async () => { this.status.ok(t.revokedOne(k.id)); await this.load() })
              .catch((err: unknown) => { this.status.fail(err, t.revoke) })
          }, { class: 'danger', 'data-token': k.id })
    ]), t.noTokens))
  }
}
