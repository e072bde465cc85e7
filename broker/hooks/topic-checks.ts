/** Checks of topic names and filters shared by the publish and subscribe hooks. */

/**
 * A topic name or filter that was not well-formed UTF-8 on the wire, or that
 * holds U+0000 ([MQTT-1.5.3-1], [MQTT-1.5.3-2]: the server closes the
 * connection). mqtt-packet decodes ill-formed bytes to U+FFFD instead of
 * failing, so a U+FFFD is taken as ill-formed input (a well-formed topic with
 * a literal U+FFFD is refused too; no real topic uses it).
 */
export function illFormedTopic (topic: string): boolean {
  return topic.includes('\uFFFD') || topic.includes('\u0000')
}

export function levelCount (topic: string): number {
  let n = 1
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47 /* / */) n++
  return n
}
