// Builds the server's wheel from the repository root (`python -m build --wheel`) into server/, where
// `vsce package` takes it into the .vsix: the extension installs it when no server is found.
// The wheel's version must be the extension's (one version for both): a mismatch stops the package.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const ext = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const root = path.resolve(ext, "..", "..");
const version = JSON.parse(fs.readFileSync(path.join(ext, "package.json"), "utf8")).version;
const venvPython = path.join(root, ".venv", process.platform === "win32" ? "Scripts/python.exe" : "bin/python");
// PYTHON, else the checkout's .venv (where `pip install -e '.[dev]'` put `build`), else python3
const python = process.env.PYTHON || (fs.existsSync(venvPython) ? venvPython : "python3");

const out = fs.mkdtempSync(path.join(os.tmpdir(), "phasewise-wheel-"));
try {
  execFileSync(python, ["-m", "build", "--wheel", "--outdir", out, root], { stdio: "inherit" });
  const wheel = `phasewise-${version}-py3-none-any.whl`;
  if (!fs.existsSync(path.join(out, wheel))) {
    throw new Error(
      `the build gave ${fs.readdirSync(out).join(", ")}, not ${wheel}: the server's version in pyproject.toml ` +
        `and the extension's in package.json (${version}) must be the same`,
    );
  }
  const dest = path.join(ext, "server");
  fs.rmSync(dest, { recursive: true, force: true });
  fs.mkdirSync(dest);
  fs.copyFileSync(path.join(out, wheel), path.join(dest, wheel));
  console.log(`bundled ${path.relative(root, path.join(dest, wheel))}`);
} finally {
  fs.rmSync(out, { recursive: true, force: true });
}
