/**
 * The kernel module for runtimes without shared memory: the same code importing an unshared
 * memory (used when loading, and by the bundle's `dist/kernels.wasm`).
 *
 * @module
 */

/**
 * Where WebAssembly's memory import is shared (flag 3: shared, with a maximum), a copy of the
 * module bytes that imports an unshared one (flag 1); the code is unchanged (atomic accesses are
 * valid on unshared memory).
 */
export function unsharedMemoryImport(bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const out = bytes.slice();
  let at = 8; // magic and version
  const leb = () => {
    let x = 0, shift = 0, b;
    do {
      b = out[at++];
      x |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    return x >>> 0;
  };
  while (at < out.length) {
    const id = out[at++], size = leb(), end = at + size;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        const moduleName = leb();
        at += moduleName;
        const fieldName = leb();
        at += fieldName;
        const kind = out[at++];
        if (kind === 2) {
          if (out[at] === 3) out[at] = 1;
          return out;
        }
        if (kind === 0) leb();
        else if (kind === 1) {
          at++; // element type
          const flags = out[at++];
          leb();
          if (flags & 1) leb();
        } else if (kind === 3) at += 2;
        else throw new Error("internal: unexpected import kind in the kernel module");
      }
    }
    at = end;
  }
  throw new Error("internal: the kernel module imports no memory");
}
