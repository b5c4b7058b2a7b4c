/**
 * SVG pictures of masks for `--svg DIR`: the element mask and the tile classes side by side,
 * with a title and a legend. Drawn from the same `maskPicture` grids the text pictures use, so
 * both always agree with the scheduler; runs of equal cells become one rectangle.
 *
 * @module
 */

import { type FlashMask, maskPicture, schedule } from "../../masks/mod.ts";

/** Colours of the cell classes. */
export const SVG_COLORS = {
  visible: "#2b6cb0",
  masked: "#edf2f7",
  mixed: "#90b4dd",
  full: "#2f855a",
  partial: "#d69e2e",
  skipped: "#edf2f7",
} as const;

/** Options of {@linkcode maskSvg}. */
export interface SvgOptions {
  /** Title, e.g. the mask type. */
  title: string;
  /** Query length (default: the mask's key length). */
  nq?: number;
  /** Tile size. */
  tile: [number, number];
  /** Most cells per side of the element picture (default 128; larger masks are downsampled). */
  maxCells?: number;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * An SVG document: the element mask (left) and the tile classes (right) of one mask slice,
 * with a legend and the visible fraction and tile counts in the caption.
 *
 * @example
 * ```ts
 * import { maskSvg } from "./_svg.ts";
 * import { causal } from "../../masks/mod.ts";
 * import assert from "node:assert/strict";
 *
 * const svg = maskSvg(causal(64), { title: "causal", tile: [16, 16] });
 * assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
 * ```
 */
export function maskSvg(mask: FlashMask, options: SvgOptions): string {
  const nk = mask.shape[2], nq = options.nq ?? nk;
  const [br, bc] = options.tile;
  const maxCells = options.maxCells ?? 128;
  const plan = schedule(mask, { nq, nk, blockRows: br, blockCols: bc });
  const elems = maskPicture(mask, { nq, maxSize: maxCells }).split("\n");
  const tiles = maskPicture(mask, {
    nq,
    maxSize: maxCells,
    blocks: { blockRows: br, blockCols: bc },
  })
    .split("\n");
  const panel = 320, pad = 20, top = 56, gap = 40;
  const width = pad * 2 + panel * 2 + gap, height = top + panel + 90;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">`,
    `<title>${xmlEscape(`${options.title}: mask and tiles`)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${pad}" y="22" font-size="16" font-weight="bold">${xmlEscape(options.title)}</text>`,
    `<text x="${pad}" y="42">${
      xmlEscape(
        `Nq=${nq} Nk=${nk}, visible ${
          (plan.visibleFraction * 100).toFixed(1)
        }% · tiles ${br}×${bc}: ` +
          `${plan.tiles.full} full, ${plan.tiles.partial} partial, ${plan.tiles.skipped} skipped ` +
          `(density ${(plan.density * 100).toFixed(1)}%)`,
      )
    }</text>`,
    grid(elems, pad, top, panel, {
      "█": SVG_COLORS.visible,
      "░": SVG_COLORS.masked,
      "▒": SVG_COLORS.mixed,
    }),
    grid(tiles, pad + panel + gap, top, panel, {
      "█": SVG_COLORS.full,
      "▓": SVG_COLORS.partial,
      "░": SVG_COLORS.skipped,
    }),
    `<rect x="${pad}" y="${top}" width="${panel}" height="${panel}" fill="none" stroke="#4a5568"/>`,
    `<rect x="${pad + panel + gap}" y="${top}" width="${panel}" height="${panel}" fill="none" ` +
    `stroke="#4a5568"/>`,
    `<text x="${pad}" y="${top + panel + 18}">elements (rows: queries, columns: keys)</text>`,
    `<text x="${pad + panel + gap}" y="${top + panel + 18}">tiles of ${br}×${bc}</text>`,
  ];
  const legend: [string, string][] = [
    [SVG_COLORS.visible, "visible"],
    [SVG_COLORS.masked, "masked"],
    [SVG_COLORS.mixed, "both (downsampled)"],
    [SVG_COLORS.full, "full tile"],
    [SVG_COLORS.partial, "partial tile"],
    [SVG_COLORS.skipped, "skipped tile"],
  ];
  legend.forEach(([color, label], i) => {
    const x = pad + (i % 3) * 200, y = top + panel + 36 + Math.floor(i / 3) * 22;
    parts.push(
      `<rect x="${x}" y="${y}" width="14" height="14" fill="${color}" stroke="#4a5568"/>`,
      `<text x="${x + 20}" y="${y + 12}">${xmlEscape(label)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/** Rectangles for a character grid scaled into a size×size square; one rect per run. */
function grid(
  lines: string[],
  x0: number,
  y0: number,
  size: number,
  colors: Record<string, string>,
): string {
  const rows = lines.length, cols = Math.max(...lines.map((l) => [...l].length));
  const cw = size / cols, ch = size / rows;
  const out: string[] = [];
  lines.forEach((line, r) => {
    const cells = [...line];
    let c = 0;
    while (c < cells.length) {
      let e = c + 1;
      while (e < cells.length && cells[e] === cells[c]) e++;
      const fill = colors[cells[c]];
      if (fill === undefined) throw new RangeError(`unexpected picture cell ${cells[c]}`);
      out.push(
        `<rect x="${num(x0 + c * cw)}" y="${num(y0 + r * ch)}" width="${num((e - c) * cw)}" ` +
          `height="${num(ch)}" fill="${fill}"/>`,
      );
      c = e;
    }
  });
  return `<g shape-rendering="crispEdges">\n${out.join("\n")}\n</g>`;
}

function num(x: number): string {
  return String(Math.round(x * 100) / 100);
}
