/**
 * The extension's own environment for the language server: a virtual environment in its global
 * storage, made with the user's Python (python3 on PATH) and given the wheel the .vsix carries
 * (`server/phasewise-<version>-py3-none-any.whl`; its dependencies come from the package index).
 * Each step shows in a progress notification and in the output channel. Used only when the user's
 * own places (the settings, the workspace's .venv, PATH) have no server.
 */

import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

import type { Log } from "./log";

/** Why the install stopped; the message says what to do. */
export class InstallError extends Error {}

/** The oldest Python the server runs on (pyproject.toml's `requires-python`). */
const MIN_PYTHON: [number, number] = [3, 11];
/** pip's lines worth a glance in the notification (the rest go to the output channel only). */
const PIP_STEP =
  /^\s*(Processing|Collecting|Downloading|Using cached|Installing collected packages|Successfully installed)/;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class ManagedEnvironment {
  /** What the progress notification said, in order (the test driver reads it). */
  readonly steps: string[] = [];

  constructor(
    /** The extension's global storage folder: the environment lives in `server-env` under it. */
    private readonly storage: vscode.Uri,
    /** The installed extension's folder, which holds `server/<wheel>`. */
    private readonly extensionPath: string,
    /** The extension's version: the server's must be the same. */
    readonly version: string,
    private readonly log: Log,
  ) {}

  get dir(): string {
    return path.join(this.storage.fsPath, "server-env");
  }

  /** The environment's interpreter (it may not exist yet). */
  get python(): string {
    return process.platform === "win32"
      ? path.join(this.dir, "Scripts", "python.exe")
      : path.join(this.dir, "bin", "python");
  }

  /** The server's wheel inside the .vsix; undefined in a build packed without it. */
  get wheel(): string | undefined {
    const candidate = path.join(this.extensionPath, "server", `phasewise-${this.version}-py3-none-any.whl`);
    return fs.existsSync(candidate) ? candidate : undefined;
  }

  /**
   * Makes the environment (when it is missing) and installs the bundled wheel into it (replacing
   * another version of the server there), showing each step in a cancellable progress notification.
   */
  install(): Thenable<void> {
    const title = fs.existsSync(this.python)
      ? `Phasewise: updating the language server to ${this.version}`
      : "Phasewise: installing the language server";
    return vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title, cancellable: true },
      (progress, token) => this.run(progress, token),
    );
  }

  private async run(progress: vscode.Progress<{ message?: string }>, token: vscode.CancellationToken): Promise<void> {
    this.steps.length = 0;
    /** A step in the notification; in the output channel too, unless it is a line of pip's, there already. */
    const report = (message: string, logged = false) => {
      this.steps.push(message);
      if (!logged) {
        this.log.info(`install: ${message}`);
      }
      progress.report({ message });
    };
    const wheel = this.wheel;
    if (!wheel) {
      throw new InstallError(
        `Phasewise: this build of the extension carries no server wheel (server/phasewise-${this.version}-py3-none-any.whl ` +
          `in ${this.extensionPath}); install the server yourself and set phasewise.server.pythonPath.`,
      );
    }
    if (!fs.existsSync(this.python)) {
      const base = await this.userPython();
      report(`creating a virtual environment with ${base.path} (Python ${base.version})…`);
      fs.rmSync(this.dir, { recursive: true, force: true }); // a half-made one from a cancelled install
      const made = await this.exec(base.path, ["-m", "venv", this.dir], token).catch((err: unknown) => {
        fs.rmSync(this.dir, { recursive: true, force: true }); // cancelled: no half-made one left
        throw err;
      });
      if (made.code !== 0) {
        fs.rmSync(this.dir, { recursive: true, force: true });
        throw new InstallError(
          `Phasewise: \`${base.path} -m venv\` failed (${lastLines(made.stderr || made.stdout)}). ` +
            "On Debian and Ubuntu the venv module is a package of its own: sudo apt install python3-venv.",
        );
      }
    } else {
      // another version is there (same version: pip would leave it): the wheel replaces it
      report(`replacing the server in ${this.dir} with phasewise ${this.version}…`);
      const replaced = await this.exec(
        this.python,
        [
          "-m",
          "pip",
          "install",
          "--disable-pip-version-check",
          "--progress-bar",
          "off",
          "--force-reinstall",
          "--no-deps",
          wheel,
        ],
        token,
      );
      if (replaced.code !== 0) {
        throw new InstallError(
          `Phasewise: pip could not replace the server in ${this.dir} (${lastLines(replaced.stderr || replaced.stdout)}). ` +
            "See the output channel.",
        );
      }
    }
    report(`installing phasewise ${this.version} and its dependencies from the package index…`);
    const pip = await this.exec(
      this.python,
      ["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", "--upgrade", wheel],
      token,
      (line) => {
        if (PIP_STEP.test(line)) {
          const wheelByName = line.trim().replace(/\S*[/\\]([^/\\\s]+\.whl)/, "$1");
          report(wheelByName.slice(0, 120), true);
        }
      },
    );
    if (pip.code !== 0) {
      throw new InstallError(
        `Phasewise: pip could not install the server into ${this.dir} (${lastLines(pip.stderr || pip.stdout)}). ` +
          "See the output channel; the dependencies come from the package index, so check the network or pip's index settings.",
      );
    }
    const check = await this.exec(this.python, ["-m", "phasewise", "--version"], token);
    const installed = check.stdout.trim();
    if (check.code !== 0 || !installed.startsWith("phasewise")) {
      throw new InstallError(
        `Phasewise: the server was installed into ${this.dir} but does not start (${lastLines(check.stderr)}).`,
      );
    }
    report(`${installed} installed in ${this.dir}`);
  }

  /** python3 (then python) on PATH, of a version the server runs on. */
  private async userPython(): Promise<{ path: string; version: string }> {
    const seen: string[] = [];
    for (const name of process.platform === "win32" ? ["python", "py"] : ["python3", "python"]) {
      const exe = onPath(name);
      if (!exe) {
        continue;
      }
      const ran = await this.exec(exe, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]);
      const version = ran.stdout.trim();
      const [major, minor] = version.split(".").map(Number);
      if (ran.code === 0 && (major > MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor >= MIN_PYTHON[1]))) {
        return { path: exe, version };
      }
      seen.push(`${exe} (${ran.code === 0 ? `Python ${version}` : "did not run"})`);
    }
    const needed = MIN_PYTHON.join(".");
    throw new InstallError(
      seen.length === 0
        ? `Phasewise: installing the language server needs Python ${needed} or later, and there is no python3 on PATH. ` +
            "Install Python (python.org, or your system's package manager), then click Install again; " +
            "or set phasewise.server.pythonPath to a Python that has the server."
        : `Phasewise: installing the language server needs Python ${needed} or later; PATH has only ${seen.join(", ")}. ` +
            "Install a newer Python, then click Install again; or set phasewise.server.pythonPath.",
    );
  }

  /** Runs a process to its end, every output line to the output channel; cancelling kills it. */
  private exec(
    command: string,
    args: string[],
    token?: vscode.CancellationToken,
    onLine?: (line: string) => void,
  ): Promise<Ran> {
    this.log.info(`install: ${[command, ...args].join(" ")}`);
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, { env: { ...process.env, PYTHONUNBUFFERED: "1" } });
      const out = { stdout: "", stderr: "" };
      const cancel = token?.onCancellationRequested(() => child.kill());
      const lines = (stream: "stdout" | "stderr") => {
        let pending = "";
        return (chunk: Buffer) => {
          out[stream] += chunk.toString();
          pending += chunk.toString();
          const parts = pending.split(/\r?\n/);
          pending = parts.pop() ?? "";
          for (const line of parts.filter((l) => l.trim())) {
            this.log.info(`  ${line}`);
            onLine?.(line);
          }
        };
      };
      child.stdout.on("data", lines("stdout"));
      child.stderr.on("data", lines("stderr"));
      child.on("error", (err) => {
        cancel?.dispose();
        reject(new InstallError(`Phasewise: could not run ${command}: ${err.message}`));
      });
      child.on("close", (code) => {
        cancel?.dispose();
        if (token?.isCancellationRequested) {
          reject(new InstallError("Phasewise: the install was cancelled; click Install to start it again."));
          return;
        }
        resolve({ code, ...out });
      });
    });
  }
}

function lastLines(text: string, count = 3): string {
  return text.trim().split("\n").slice(-count).join(" ").trim() || "no output";
}

/** The first executable `name` on PATH. */
export function onPath(name: string): string | undefined {
  const exts = process.platform === "win32" ? (process.env.PATHEXT ?? ".EXE;.CMD").split(";") : [""];
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        if (fs.statSync(candidate).isFile()) {
          return candidate;
        }
      } catch {
        // not here
      }
    }
  }
  return undefined;
}
