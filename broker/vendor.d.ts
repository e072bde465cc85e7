// Type declarations for dependencies that ship none. Only what Warbler uses.
declare module 'aedes-persistence-redis' {
  /** Options are ioredis' (`conn` may be a URL), plus the persistence's own. */
  const factory: (opts?: Record<string, unknown>) => unknown
  export default factory
}
