/**
 * A QR code as an SVG element: uqr encodes, this draws one path of the dark
 * modules (SVG attributes, no style: the page's CSP forbids inline style).
 */
import { encode } from 'uqr'

const SVG = 'http://www.w3.org/2000/svg'

export function qrSvg (text: string, label: string): SVGSVGElement {
  // M: a phone still reads it with a smudge; border 4 is the quiet zone the standard asks for.
  const { data, size } = encode(text, { ecc: 'M', border: 4 })
  let d = ''
  data.forEach((row, y) => { row.forEach((dark, x) => { if (dark) d += `M${x} ${y}h1v1h-1z` }) })
  const svg = document.createElementNS(SVG, 'svg')
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`)
  svg.setAttribute('class', 'qr')
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', label)
  svg.setAttribute('shape-rendering', 'crispEdges')
  svg.setAttribute('data-modules', String(size))
  const bg = document.createElementNS(SVG, 'rect')
  for (const [k, v] of [['width', String(size)], ['height', String(size)], ['fill', '#fff']]) bg.setAttribute(k as string, v as string)
  const path = document.createElementNS(SVG, 'path')
  path.setAttribute('d', d)
  path.setAttribute('fill', '#000')
  svg.append(bg, path)
  return svg
}
