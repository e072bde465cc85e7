// The app's PNG icons (for the manifest and home screens that take no SVG),
// drawn here pixel by pixel after web/icon.svg's shapes, so the repository
// holds no binary and the build needs no image library.
import { crc32, deflateSync } from 'node:zlib'

const GREEN = [0x2d, 0x4a, 0x3e]
const LIGHT = [0xf4, 0xf5, 0xf2]
const DARK = [0x1f, 0x26, 0x23]
const BEAK = [0xe0, 0xa0, 0x30]
const WING = [0x5c, 0x9c, 0x7f]

/** The colour of the point (x, y) of the 512-unit drawing, or null outside the rounded square. */
function colour (x, y) {
  const r = 96
  const cx = Math.min(Math.max(x, r), 512 - r)
  const cy = Math.min(Math.max(y, r), 512 - r)
  if ((x - cx) ** 2 + (y - cy) ** 2 > r * r) return null
  if (x >= 396 && x <= 470 && Math.abs(y - 256) <= 24 * (470 - x) / 74) return BEAK
  if ((x - 300) ** 2 + (y - 226) ** 2 <= 22 * 22) return DARK
  if (((x - 235) / 95) ** 2 + ((y - 335) / 38) ** 2 <= 1) return WING
  if ((x - 256) ** 2 + (y - 272) ** 2 <= 150 * 150) return LIGHT
  return GREEN
}

function chunk (type, data) {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(data.length)
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(body))
  return Buffer.concat([len, body, crc])
}

/** A size x size RGBA PNG of the icon. */
export function iconPng (size) {
  const rows = []
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 4) // filter byte 0, then RGBA
    for (let x = 0; x < size; x++) {
      const c = colour((x + 0.5) * 512 / size, (y + 0.5) * 512 / size)
      if (c !== null) row.set([...c, 255], 1 + x * 4)
    }
    rows.push(row)
  }
  const head = Buffer.alloc(13)
  head.writeUInt32BE(size, 0)
  head.writeUInt32BE(size, 4)
  head.set([8, 6, 0, 0, 0], 8) // 8 bits, RGBA, deflate, no filter, no interlace
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', head), chunk('IDAT', deflateSync(Buffer.concat(rows), { level: 9 })), chunk('IEND', Buffer.alloc(0))])
}
