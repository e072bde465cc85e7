/**
 * Preloaded into a broker the fuzzer spawns (NODE_OPTIONS="--expose-gc
 * --import=.../gc-hook.js"): SIGUSR2 runs a full garbage collection, so the
 * test can read the heap on /metrics with the garbage gone. Test-only.
 */
process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.()
})
