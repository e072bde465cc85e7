/**
 * Preloaded (`node --expose-gc --import .../dist/bench/gc-ipc.js`, see
 * GC_NODE_ARGS in bench/targets.ts) into a broker process that
 * `warbler bench` spawns with an IPC channel: on `{ gc: true }` it runs full
 * collections and answers with process.memoryUsage(), so that memory is read
 * after garbage is gone (targets.ts gcMemory). Inert without an IPC channel
 * or without --expose-gc.
 */
const gc = (globalThis as { gc?: () => void }).gc
if (process.send !== undefined && gc !== undefined) {
  process.on('message', (m: { gc?: boolean }) => {
    if (m?.gc !== true) return
    gc()
    // A second pass after the weak callbacks and finalizers of the first ran.
    setTimeout(() => {
      gc()
      process.send?.({ memory: process.memoryUsage() })
    }, 200)
  })
  // The channel must not keep the broker alive after its own shutdown.
  process.channel?.unref()
}
