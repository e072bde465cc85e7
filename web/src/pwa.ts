/**
 * Installing the app: the service worker (sw.ts, served as /sw.js) caches the
 * shell. Browsers allow service workers only in a secure context (https, or
 * 127.0.0.1 / localhost): a page opened over plain http by address simply
 * works without one.
 */
export function registerServiceWorker (): void {
  if (!window.isSecureContext || !('serviceWorker' in navigator)) return
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {
    // Not installable then; the app itself works the same.
  })
}
