/** Access tokens: when to ask the app for a fresh one before reconnecting. */

/** Whether `token` is a JWT that expires within a minute (anything else, a password say, never does). */
export function expiresSoon (token: string): boolean {
  const parts = token.split('.')
  if (parts.length !== 3 || !token.startsWith('eyJ')) return false
  try {
    const b64 = (parts[1] as string).replace(/-/g, '+').replace(/_/g, '/')
    const payload = JSON.parse(atob(b64)) as { exp?: number }
    return typeof payload.exp === 'number' && payload.exp * 1000 < Date.now() + 60_000
  } catch {
    return false
  }
}
