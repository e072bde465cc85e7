/**
 * How often every broker publishes `$SYS/{id}/heartbeat` (aedes'
 * heartbeatInterval; aedes' own default is a minute). The message service
 * takes a broker's clients offline, and aedes publishes the wills of its
 * clients, when it has missed three heartbeats: a broker killed without
 * closing its clients is noticed within PRESENCE_EXPIRY_MS.
 */
export const HEARTBEAT_MS = 10_000
export const PRESENCE_EXPIRY_MS = 3 * HEARTBEAT_MS
