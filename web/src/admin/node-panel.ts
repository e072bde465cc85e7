/**
 * The node: health and readiness (/healthz, /readyz, open to anyone), the
 * retention settings in force (read-only), a backup download, and the recent
 * refused logins, which say why a device cannot connect (never a secret).
 */
import { h } from '../dom.js'
import type { AdminApi, NodeInfo, RefusalRow } from './api-client.js'
import type { ConsoleStrings } from './console-strings.js'
import { button, StatusLine, table, when } from './ui.js'

export class NodePanel {
  readonly root: HTMLElement
  private readonly facts = h('dl', { id: 'node-facts' })
  private readonly refusals = h('div', { class: 'list' })
  private readonly status = new StatusLine('node-status')

  constructor (private readonly api: AdminApi, private readonly t: ConsoleStrings, private readonly lang: string) {
    const backup = button(t.backup, (b) => { void this.backup(b) }, { id: 'backup' })
    this.root = h('section', { id: 'node', 'aria-labelledby': 'node-h' }, h('h2', { id: 'node-h' }, t.sections.node),
      this.facts, backup, this.status.el, h('h3', {}, t.refusals), this.refusals)
  }

  async load (): Promise<void> {
    const t = this.t
    const probe = async (p: string): Promise<boolean> => (await fetch(p, { credentials: 'omit' }).catch(() => null))?.ok === true
    const [info, health, ready, { refusals }] = await Promise.all([
      this.api.get<NodeInfo>('node'), probe('/healthz'), probe('/readyz'), this.api.get<{ refusals: RefusalRow[] }>('refusals')
    ])
    this.facts.replaceChildren(
      h('dt', {}, t.health), h('dd', { id: 'node-health' }, `${health ? t.healthy : t.failed} · ${ready ? t.ready : t.notReady}`),
      h('dt', {}, t.retention), h('dd', { id: 'node-retention' }, `${t.retentionDays(info.retention.days)}; ${t.retentionMessages(info.retention.messages)}`),
      h('dt', {}, 'Warbler'), h('dd', {}, `${info.version} · ${Object.entries(info.ports).map(([k, v]) => `${k} ${v}`).join(', ')}`))
    // With `--workers N` each row names the worker that refused it.
    const workers = refusals.some((r) => r.worker !== undefined)
    this.refusals.replaceChildren(table('refusals-table', [t.when, t.reason, t.user, t.clientId, t.address, ...(workers ? [t.worker] : [])], refusals.map((r) => [
      when(r.at, this.lang), r.reason, r.user ?? '–', r.clientId ?? '–', r.address, ...(workers ? [String(r.worker ?? '–')] : [])
    ]), t.noRefusals))
  }

  /** Fetched with the admin's token (a plain link could not carry it), then saved as a file. */
  private async backup (b: HTMLButtonElement): Promise<void> {
    b.disabled = true
    this.status.ok(this.t.backingUp)
    try {
      const res = await this.api.raw('GET', 'backup')
      const name = /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? 'warbler-backup.db'
      const blob = await res.blob()
      const a = h('a', { href: URL.createObjectURL(blob), download: name })
      a.click()
      setTimeout(() => { URL.revokeObjectURL(a.href) }, 60_000)
      this.status.ok(this.t.backedUp(blob.size))
    } catch (err) {
      this.status.fail(err, this.t.backup)
    } finally {
      b.disabled = false
    }
  }
}
