/**
 * Raw DEFLATE decoding (RFC 1951), synchronous: the embedded kernel builds are stored compressed
 * (`CompressionStream("deflate-raw")` in `wasm/build.ts`), a third of their base64 size, and
 * decoded when the engine is created, which is synchronous (DecompressionStream is not).
 *
 * @module
 */

/** Lengths 257..285 and distances 0..29: base values and extra bits (RFC 1951 §3.2.5). */
const LEN_BASE = [
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  13,
  15,
  17,
  19,
  23,
  27,
  31,
  35,
  43,
  51,
  59,
  67,
  83,
  99,
  115,
  131,
  163,
  195,
  227,
  258,
];
const LEN_EXTRA = [
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  1,
  1,
  1,
  1,
  2,
  2,
  2,
  2,
  3,
  3,
  3,
  3,
  4,
  4,
  4,
  4,
  5,
  5,
  5,
  5,
  0,
];
const DIST_BASE = [
  1,
  2,
  3,
  4,
  5,
  7,
  9,
  13,
  17,
  25,
  33,
  49,
  65,
  97,
  129,
  193,
  257,
  385,
  513,
  769,
  1025,
  1537,
  2049,
  3073,
  4097,
  6145,
  8193,
  12289,
  16385,
  24577,
];
const DIST_EXTRA = [
  0,
  0,
  0,
  0,
  1,
  1,
  2,
  2,
  3,
  3,
  4,
  4,
  5,
  5,
  6,
  6,
  7,
  7,
  8,
  8,
  9,
  9,
  10,
  10,
  11,
  11,
  12,
  12,
  13,
  13,
];
/** Order of the code length code lengths in a dynamic block header. */
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** A canonical Huffman code: symbol counts per length and symbols sorted by code. */
interface Code {
  counts: Uint16Array;
  symbols: Uint16Array;
}

function code(lengths: ArrayLike<number>): Code {
  const counts = new Uint16Array(16), offsets = new Uint16Array(16);
  for (let i = 0; i < lengths.length; i++) counts[lengths[i]]++;
  counts[0] = 0;
  for (let i = 1; i < 16; i++) offsets[i] = offsets[i - 1] + counts[i - 1];
  const symbols = new Uint16Array(lengths.length);
  for (let i = 0; i < lengths.length; i++) if (lengths[i]) symbols[offsets[lengths[i]]++] = i;
  return { counts, symbols };
}

/** Decodes a raw DEFLATE stream; throws a RangeError on malformed input. */
export function inflateRaw(src: Uint8Array): Uint8Array<ArrayBuffer> {
  let out = new Uint8Array(src.length * 4 + 1024), n = 0;
  let at = 0, bitBuf = 0, bitCount = 0;
  const bad = (what: string): never => {
    throw new RangeError(`inflateRaw: ${what} at byte ${at}`);
  };
  const bits = (k: number): number => {
    while (bitCount < k) {
      if (at >= src.length) bad("input ends");
      bitBuf |= src[at++] << bitCount;
      bitCount += 8;
    }
    const v = bitBuf & ((1 << k) - 1);
    bitBuf >>>= k;
    bitCount -= k;
    return v;
  };
  const decodeSym = (c: Code): number => {
    let first = 0, index = 0, value = 0;
    for (let len = 1; len < 16; len++) {
      value |= bits(1);
      const count = c.counts[len];
      if (value - first < count) return c.symbols[index + value - first];
      index += count;
      first = (first + count) << 1;
      value <<= 1;
    }
    return bad("invalid Huffman code");
  };
  const room = (k: number) => {
    if (n + k <= out.length) return;
    const grown = new Uint8Array(Math.max(out.length * 2, n + k));
    grown.set(out.subarray(0, n));
    out = grown;
  };
  let fixed: [Code, Code] | undefined;
  for (let last = 0; !last;) {
    last = bits(1);
    const type = bits(2);
    if (type === 0) { // stored
      bitBuf = bitCount = 0;
      if (at + 4 > src.length) bad("input ends");
      const len = src[at] | (src[at + 1] << 8);
      at += 4;
      if (at + len > src.length) bad("input ends");
      room(len);
      out.set(src.subarray(at, at + len), n);
      n += len;
      at += len;
      continue;
    }
    let lit: Code, dist: Code;
    if (type === 1) {
      fixed ??= [
        code(Array.from({ length: 288 }, (_, i) => i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8)),
        code(new Array(30).fill(5)),
      ];
      [lit, dist] = fixed;
    } else if (type === 2) {
      const nLit = bits(5) + 257, nDist = bits(5) + 1, nCl = bits(4) + 4;
      const clLengths = new Uint8Array(19);
      for (let i = 0; i < nCl; i++) clLengths[CL_ORDER[i]] = bits(3);
      const cl = code(clLengths);
      const lengths = new Uint8Array(nLit + nDist);
      for (let i = 0; i < nLit + nDist;) {
        const sym = decodeSym(cl);
        if (sym < 16) {
          lengths[i++] = sym;
          continue;
        }
        const [value, repeat] = sym === 16
          ? [i > 0 ? lengths[i - 1] : bad("repeat of no length"), 3 + bits(2)]
          : [0, sym === 17 ? 3 + bits(3) : 11 + bits(7)];
        if (i + repeat > nLit + nDist) bad("too many lengths");
        lengths.fill(value, i, i + repeat);
        i += repeat;
      }
      lit = code(lengths.subarray(0, nLit));
      dist = code(lengths.subarray(nLit));
    } else {
      return bad("invalid block type");
    }
    for (;;) {
      const sym = decodeSym(lit);
      if (sym < 256) {
        room(1);
        out[n++] = sym;
      } else if (sym === 256) {
        break;
      } else {
        const li = sym - 257;
        if (li >= 29) bad("invalid length");
        const len = LEN_BASE[li] + bits(LEN_EXTRA[li]);
        const di = decodeSym(dist);
        if (di >= 30) bad("invalid distance");
        const back = DIST_BASE[di] + bits(DIST_EXTRA[di]);
        if (back > n) bad("distance before the start");
        room(len);
        for (let k = 0; k < len; k++, n++) out[n] = out[n - back];
      }
    }
  }
  return out.slice(0, n);
}
