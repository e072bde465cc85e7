/**
 * A small line chart of the last samples of one figure, as SVG (no chart
 * library): the line is scaled to the largest value shown, the current value
 * is written beside the title as text.
 */
const SVG = 'http://www.w3.org/2000/svg'
const KEEP = 60
const W = 120
const H = 36

export class Chart {
  readonly root: HTMLElement
  private readonly samples: number[] = []
  private readonly line: SVGPolylineElement
  private readonly value: HTMLElement

  constructor (id: string, title: string, private readonly unit: string, private readonly digits = 0) {
    this.value = document.createElement('span')
    this.value.className = 'value'
    this.value.id = `${id}-value`
    const heading = document.createElement('h4')
    heading.append(document.createTextNode(title), document.createTextNode(' '), this.value)
    const svg = document.createElementNS(SVG, 'svg')
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`)
    svg.setAttribute('preserveAspectRatio', 'none')
    svg.setAttribute('aria-hidden', 'true')
    this.line = document.createElementNS(SVG, 'polyline')
    this.line.setAttribute('fill', 'none')
    this.line.setAttribute('stroke', '#2d4a3e')
    this.line.setAttribute('stroke-width', '1.5')
    this.line.setAttribute('vector-effect', 'non-scaling-stroke')
    svg.append(this.line)
    this.root = document.createElement('figure')
    this.root.className = 'chart'
    this.root.id = id
    this.root.append(heading, svg)
    this.value.textContent = '–'
  }

  push (v: number): void {
    this.samples.push(v)
    if (this.samples.length > KEEP) this.samples.shift()
    const max = Math.max(...this.samples, 1e-9)
    const step = W / (KEEP - 1)
    const offset = KEEP - this.samples.length
    this.line.setAttribute('points', this.samples.map((s, i) => `${((offset + i) * step).toFixed(1)},${(H - 2 - (s / max) * (H - 4)).toFixed(1)}`).join(' '))
    this.value.textContent = `${v.toFixed(this.digits)}${this.unit}`
    this.root.dataset.samples = String(this.samples.length)
  }
}
