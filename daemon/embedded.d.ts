// The native addon's bytes, embedded by scripts/package.ts into the single executable.
declare module 'tether:addon' {
  const bytes: Uint8Array;
  export default bytes;
}
