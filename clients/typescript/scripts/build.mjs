// `npm run build`: compile src/index.ts to dist/ (index.js, index.d.ts), then record the
// source's sha256 in dist/SOURCE_SHA256 so a test can tell a dist/ older than its source.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
rmSync(dist, { recursive: true, force: true });
execFileSync(join(root, "node_modules", ".bin", "tsc"), ["-p", join(root, "tsconfig.json")], {
  stdio: "inherit",
});
const source = readFileSync(join(root, "src", "index.ts"));
writeFileSync(join(dist, "SOURCE_SHA256"), `${createHash("sha256").update(source).digest("hex")}\n`);
