import {
  alibiCases,
  checkCase,
  checkMaskedRows,
  featureCases,
  sinkCases,
  standardCases,
} from "./_cases.ts";

for (const c of standardCases({ large: true })) {
  Deno.test(`js backend: ${c.name}`, () => checkCase(c, { backend: "js" }));
}

Deno.test("js backend: fully masked rows give 0, -Infinity and zero gradients", () =>
  checkMaskedRows({ backend: "js" }));

for (const c of featureCases()) {
  Deno.test(`js backend: ${c.name}`, () => checkCase(c, { backend: "js" }));
}

for (const c of [...sinkCases(), ...alibiCases()]) {
  Deno.test(`js backend: ${c.name}`, () => checkCase(c, { backend: "js" }));
}
