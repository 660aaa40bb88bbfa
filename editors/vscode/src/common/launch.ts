/**
 * How to start `phasewise serve`: the client settings `phasewise.server.command` and
 * `phasewise.server.pythonPath`, then a workspace `.venv`, then `phasewise` on PATH, then the
 * extension's own environment (install.ts). Each candidate is probed with `--version` so a wrong
 * one is reported before the client starts.
 */

import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";

import { REPO_INSTALL_COMMAND, SERVER_SETTINGS } from "./constants";
import { onPath, type ManagedEnvironment } from "./install";

export interface Launch {
  command: string;
  args: string[];
  /** Where the command came from, for the output channel. */
  origin: string;
  version?: string;
  /** Started from the extension's own environment, which it may update. */
  managed?: boolean;
}

export class LaunchError extends Error {
  constructor(
    message: string,
    /** A command the user can run to install the server where the settings point. */
    readonly installCommand: string,
    /** Nothing was set and nothing found: the extension's own environment can be made (Install). */
    readonly canInstall = false,
  ) {
    super(message);
  }
}

const PROBE_TIMEOUT_MS = 15_000;

function probe(command: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: PROBE_TIMEOUT_MS }, (error, stdout) => {
      const line = stdout.trim().split("\n")[0] ?? "";
      resolve(error || !line.startsWith("phasewise") ? undefined : line);
    });
  });
}

function venvPython(folder: vscode.WorkspaceFolder): string | undefined {
  const rel = process.platform === "win32" ? ["Scripts", "python.exe"] : ["bin", "python"];
  for (const venv of [".venv", "venv"]) {
    const candidate = path.join(folder.uri.fsPath, venv, ...rel);
    if (fs.existsSync(candidate)) {
      return candidate;
    }
  }
  return undefined;
}

/** Expands `~` and `${workspaceFolder}` the way VS Code users expect in path settings. */
function expand(value: string): string {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? "";
  let out = value.replace(/\$\{workspaceFolder\}/g, folder);
  if (out.startsWith("~/")) {
    out = path.join(process.env.HOME ?? process.env.USERPROFILE ?? "", out.slice(2));
  }
  return out;
}

export async function resolveLaunch(managed: ManagedEnvironment): Promise<Launch> {
  const config = vscode.workspace.getConfiguration(SERVER_SETTINGS);
  const command = (config.get<string[]>("command") ?? []).map(expand);
  if (command.length > 0) {
    // A command of the user's own (e.g. `uvx phasewise serve`): started as given, not probed.
    return { command: command[0], args: command.slice(1), origin: `${SERVER_SETTINGS}.command` };
  }
  const pythonPath = expand(config.get<string>("pythonPath") ?? "");
  if (pythonPath) {
    const version = await probe(pythonPath, ["-m", "phasewise", "--version"]);
    if (!version) {
      // the wheel the .vsix carries: the one install that works before a release is on PyPI
      const install = managed.wheel ? `${pythonPath} -m pip install "${managed.wheel}"` : REPO_INSTALL_COMMAND;
      throw new LaunchError(
        `Phasewise: the language server is not installed for ${pythonPath} (the setting ${SERVER_SETTINGS}.pythonPath). ` +
          `Install it with: ${install}, or set ${SERVER_SETTINGS}.pythonPath to a Python ` +
          `that has it (empty: the workspace's .venv, then PATH, then the extension's own environment).`,
        install,
      );
    }
    return {
      command: pythonPath,
      args: ["-m", "phasewise", "serve"],
      origin: `${SERVER_SETTINGS}.pythonPath`,
      version,
    };
  }
  // what was looked at, in order, for the message when nothing is found
  const looked = [`the setting ${SERVER_SETTINGS}.pythonPath (not set)`];
  for (const folder of vscode.workspace.workspaceFolders ?? []) {
    const python = venvPython(folder);
    const version = python ? await probe(python, ["-m", "phasewise", "--version"]) : undefined;
    if (python && version) {
      return {
        command: python,
        args: ["-m", "phasewise", "serve"],
        origin: `the workspace's ${path.dirname(path.dirname(python))}`,
        version,
      };
    }
    looked.push(
      python ? `${python} (no phasewise installed for it)` : `a .venv or venv in ${folder.uri.fsPath} (there is none)`,
    );
  }
  const exe = onPath("phasewise");
  const version = exe ? await probe(exe, ["--version"]) : undefined;
  if (exe && version) {
    return { command: exe, args: ["serve"], origin: "PATH", version };
  }
  looked.push(exe ? `${exe} on PATH (it did not answer --version)` : "phasewise on PATH (not there)");
  const own = fs.existsSync(managed.python) ? await probe(managed.python, ["-m", "phasewise", "--version"]) : undefined;
  if (own) {
    return {
      command: managed.python,
      args: ["-m", "phasewise", "serve"],
      origin: `the extension's own environment (${managed.dir})`,
      version: own,
      managed: true,
    };
  }
  looked.push(
    `the extension's own environment (${fs.existsSync(managed.python) ? "no working phasewise in it" : "not made yet"})`,
  );
  if (!managed.wheel) {
    throw new LaunchError(
      `Phasewise: the language server (\`phasewise\`) was not found. Looked at: ${looked.join("; ")}. ` +
        `Install it from a checkout of the repository (\`${REPO_INSTALL_COMMAND}\`), ` +
        `or set ${SERVER_SETTINGS}.pythonPath to a Python that has it.`,
      REPO_INSTALL_COMMAND,
    );
  }
  throw new LaunchError(
    `Phasewise: the language server (\`phasewise\`) was not found. Looked at: ${looked.join("; ")}. ` +
      `Install puts it in the extension's own environment (a virtual environment made with python3 from PATH), ` +
      `or set ${SERVER_SETTINGS}.pythonPath to a Python that has it.`,
    `python3 -m pip install "${managed.wheel}"`,
    true,
  );
}
