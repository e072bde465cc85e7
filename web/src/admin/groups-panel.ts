/** Groups: the list, and each one's members with their roles (admin API /groups, /conversations/{id}/members). */
import { h } from '../dom.js'
import type { AdminApi, GroupRow, MemberRow } from './api-client.js'
import type { ConsoleStrings } from './console-strings.js'
import { button, StatusLine, table, when } from './ui.js'

export class GroupsPanel {
  readonly root: HTMLElement
  private readonly list = h('div', { class: 'list' })
  private readonly members = h('div', { class: 'members', id: 'group-members' })
  private readonly status = new StatusLine('groups-status')

  constructor (private readonly api: AdminApi, private readonly t: ConsoleStrings, private readonly lang: string) {
    this.root = h('section', { id: 'groups', 'aria-labelledby': 'groups-h' }, h('h2', { id: 'groups-h' }, t.sections.groups), this.status.el, this.list, this.members)
  }

  async load (): Promise<void> {
    const t = this.t
    let groups: GroupRow[]
    try {
      groups = (await this.api.get<{ groups: GroupRow[] }>('groups')).groups
    } catch (err) {
      // Without the embedded message service (--bridge off) the node has no archive to list.
      this.status.fail(err, t.sections.groups)
      return
    }
    this.list.replaceChildren(table('groups-table', [t.groupName, t.members, t.lastActive, t.actions], groups.map((g) => [
      g.name ?? g.conv, String(g.members), g.lastTs === 0 ? '–' : when(g.lastTs, this.lang),
      button(t.show, () => { void this.showMembers(g) }, { 'data-conv': g.conv })
    ]), t.noGroups))
  }

  private async showMembers (g: GroupRow): Promise<void> {
    try {
      const { members } = await this.api.get<{ members: MemberRow[] }>(`conversations/${encodeURIComponent(g.conv)}/members`)
      this.members.replaceChildren(h('h3', {}, g.name ?? g.conv), table('members-table', [this.t.user, this.t.role], members.map((m) => [m.user, m.role]), ''))
    } catch (err) {
      this.status.fail(err, this.t.show)
    }
  }
}
