/**
 * The service worker that makes the app installable and lets its shell load
 * with the node unreachable after a first visit: on install it caches the
 * page, its script, style sheet, manifest and icons (the build names them
 * in SHELL, so each build is a new worker with a cache of its own, and the
 * old caches go on activate). The page itself is fetched from the network
 * first (it carries the node's WebSocket ports and must follow new builds),
 * the cached copy only when that fails; the other shell files, whose names
 * carry their content hash, come from the cache. Nothing else (the login API,
 * MQTT) goes through it.
 */
declare const SHELL: string[]
declare const VERSION: string

interface ExtendableEvent extends Event { waitUntil: (p: Promise<unknown>) => void }
interface FetchEvent extends ExtendableEvent { request: Request, respondWith: (r: Promise<Response>) => void }
interface Scope {
  addEventListener: ((type: 'install' | 'activate', fn: (e: ExtendableEvent) => void) => void) & ((type: 'fetch', fn: (e: FetchEvent) => void) => void)
  skipWaiting: () => Promise<void>
  clients: { claim: () => Promise<void> }
  location: Location
}

const scope = self as unknown as Scope
const CACHE = `warbler-shell-${VERSION}`

scope.addEventListener('install', (e) => {
  e.waitUntil(caches.open(CACHE).then(async (c) => { await c.addAll(SHELL) }).then(async () => { await scope.skipWaiting() }))
})

scope.addEventListener('activate', (e) => {
  e.waitUntil(caches.keys()
    .then(async (keys) => await Promise.all(keys.filter((k) => k.startsWith('warbler-shell-') && k !== CACHE).map(async (k) => await caches.delete(k))))
    .then(async () => { await scope.clients.claim() }))
})

scope.addEventListener('fetch', (e) => {
  const req = e.request
  const url = new URL(req.url)
  if (req.method !== 'GET' || url.origin !== scope.location.origin) return
  if (req.mode === 'navigate' && url.pathname === '/') {
    e.respondWith(fetch(req).then((res) => {
      if (res.ok) { const copy = res.clone(); void caches.open(CACHE).then(async (c) => { await c.put('/', copy) }) }
      return res
    }, async () => await caches.match('/', { cacheName: CACHE }) ?? Response.error()))
    return
  }
  if (!SHELL.includes(url.pathname)) return
  e.respondWith(caches.match(req, { cacheName: CACHE }).then(async (hit) => hit ?? await fetch(req)))
})
