/**
 * Group chat: create, rename, add, remove, leave, change roles, list
 * members. Every change is a writer operation (ordered with sends, in the
 * same transactions) that appears in the conversation as a system message,
 * whose body is an object with a `sys` field. Roles: the owner may do
 * everything; admins may rename and add or remove plain members; members may
 * leave. Operations check everything before they change anything.
 */
import { randomBytes } from 'node:crypto'
import type { GroupRole } from '@warbler/sdk/protocol'
import { ServiceError } from './archive/archive-errors.js'
import type { ConvState, Tx } from './archive/tx.js'
import { members } from './archive/write-ops.js'

const MAX_GROUP_MEMBERS = 1000
const NAME_MAX = 100

export function checkGroupName (name: unknown): string {
  if (typeof name !== 'string' || name.trim().length === 0 || name.length > NAME_MAX) {
    throw new ServiceError('bad_request', `name must be 1-${NAME_MAX} characters`)
  }
  return name.trim()
}

function newGroupId (): string {
  return 'g:' + randomBytes(10).toString('hex')
}

async function groupFor (tx: Tx, conv: string, user: string): Promise<{ c: ConvState, role: GroupRole }> {
  const c = await tx.conv(conv)
  if (c === null || c.kind !== 'group') throw new ServiceError('not_found', `no group ${conv}`)
  const role = c.members.get(user)
  if (role === undefined) throw new ServiceError('not_member', `${user} is not a member of ${conv}`)
  return { c, role }
}

function requireRole (role: GroupRole, allowed: GroupRole[], what: string): void {
  if (!allowed.includes(role)) throw new ServiceError('forbidden', `only ${allowed.join(' or ')} may ${what}`)
}

async function requireUsers (tx: Tx, users: string[]): Promise<void> {
  for (const u of users) if (!(await tx.userExists(u))) throw new ServiceError('not_found', `no user ${u}`)
}

export async function createGroup (tx: Tx, owner: string, name: string, members: string[]): Promise<{ conv: string, seq: number }> {
  const others = members.filter((m) => m !== owner)
  if (others.length + 1 > MAX_GROUP_MEMBERS) throw new ServiceError('bad_request', `a group has at most ${MAX_GROUP_MEMBERS} members`)
  await requireUsers(tx, others)
  const id = newGroupId()
  const c = await tx.createConversation(id, 'group', name, [[owner, 'owner'], ...others.map((m) => [m, 'member'] as const)])
  const f = await tx.append(c, owner, null, { sys: 'created', name, members: [owner, ...others] }, name)
  return { conv: id, seq: f.seq }
}

export async function renameGroup (tx: Tx, user: string, conv: string, name: string): Promise<{ seq: number }> {
  const { c, role } = await groupFor(tx, conv, user)
  requireRole(role, ['owner', 'admin'], 'rename the group')
  c.name = name
  const f = await tx.append(c, user, null, { sys: 'renamed', name }, name)
  return { seq: f.seq }
}

export async function addMembers (tx: Tx, user: string, conv: string, users: string[]): Promise<{ seq: number | null, added: string[] }> {
  const { c, role } = await groupFor(tx, conv, user)
  requireRole(role, ['owner', 'admin'], 'add members')
  const added = users.filter((u) => !c.members.has(u))
  if (c.members.size + added.length > MAX_GROUP_MEMBERS) throw new ServiceError('bad_request', `a group has at most ${MAX_GROUP_MEMBERS} members`)
  await requireUsers(tx, added)
  if (added.length === 0) return { seq: null, added }
  const now = Date.now()
  for (const u of added) {
    await members.add(tx, conv, u, 'member', now)
    c.members.set(u, 'member')
  }
  const f = await tx.append(c, user, null, { sys: 'added', users: added }, '')
  return { seq: f.seq, added }
}

export async function removeMembers (tx: Tx, user: string, conv: string, users: string[]): Promise<{ seq: number | null, removed: string[] }> {
  const { c, role } = await groupFor(tx, conv, user)
  requireRole(role, ['owner', 'admin'], 'remove members')
  const removed = users.filter((u) => c.members.has(u))
  for (const u of removed) {
    const r = c.members.get(u) as GroupRole
    if (u === user) throw new ServiceError('bad_request', 'use group.leave to leave a group')
    if (r === 'owner' || (r === 'admin' && role !== 'owner')) throw new ServiceError('forbidden', `${role} may not remove ${r} ${u}`)
  }
  if (removed.length === 0) return { seq: null, removed }
  // The removed members still receive this system message, then nothing more.
  const f = await tx.append(c, user, null, { sys: 'removed', users: removed }, '')
  for (const u of removed) {
    await members.remove(tx, conv, u)
    c.members.delete(u)
  }
  return { seq: f.seq, removed }
}

export async function leaveGroup (tx: Tx, user: string, conv: string): Promise<{ seq: number, owner?: string }> {
  const { c, role } = await groupFor(tx, conv, user)
  let owner: string | undefined
  if (role === 'owner' && c.members.size > 1) {
    // Hand the group to an admin, or else a member (first by name).
    const rest = [...c.members.entries()].filter(([u]) => u !== user).sort(([a], [b]) => a < b ? -1 : 1)
    owner = (rest.find(([, r]) => r === 'admin') ?? rest[0])?.[0]
  }
  const f = await tx.append(c, user, null, owner === undefined ? { sys: 'left', user } : { sys: 'left', user, owner }, '')
  await members.remove(tx, conv, user)
  c.members.delete(user)
  if (owner !== undefined) {
    await members.setRole(tx, conv, owner, 'owner')
    c.members.set(owner, 'owner')
  }
  return owner === undefined ? { seq: f.seq } : { seq: f.seq, owner }
}

export async function setRole (tx: Tx, user: string, conv: string, target: string, newRole: unknown): Promise<{ seq: number }> {
  if (newRole !== 'admin' && newRole !== 'member') throw new ServiceError('bad_request', 'role must be admin or member')
  const { c, role } = await groupFor(tx, conv, user)
  requireRole(role, ['owner'], 'change roles')
  const current = c.members.get(target)
  if (current === undefined) throw new ServiceError('not_member', `${target} is not a member of ${conv}`)
  if (current === 'owner') throw new ServiceError('forbidden', 'the owner keeps the owner role (leave to hand it over)')
  await members.setRole(tx, conv, target, newRole)
  c.members.set(target, newRole)
  const f = await tx.append(c, user, null, { sys: 'role', user: target, role: newRole }, '')
  return { seq: f.seq }
}
