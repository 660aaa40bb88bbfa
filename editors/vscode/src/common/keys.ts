/**
 * API keys in VS Code's SecretStorage. Values reach the server in memory only (the
 * `phasewise/setKeys` notification); names, which are not secret, are listed in global state
 * because SecretStorage cannot enumerate.
 */

import * as vscode from "vscode";

const PREFIX = "phasewise.key.";
const NAMES = "phasewise.keyNames";
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isEnvName(name: string): boolean {
  return ENV_NAME.test(name);
}

export class KeyStore implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<Record<string, string>>();
  /**
   * Fires when another window of the same profile set or removed a key, with what to send: the
   * new value, or "" when it was removed. (This window's own changes are sent by their caller.)
   */
  readonly onDidChange = this.changed.event;
  private readonly subscription: vscode.Disposable;
  private readonly own = new Set<string>();

  constructor(
    private readonly secrets: vscode.SecretStorage,
    private readonly state: vscode.Memento,
  ) {
    this.subscription = secrets.onDidChange(async (e) => {
      if (this.own.delete(e.key)) {
        return;
      }
      if (e.key.startsWith(PREFIX)) {
        const env = e.key.slice(PREFIX.length);
        this.changed.fire({ [env]: (await this.secrets.get(e.key)) ?? "" });
      }
    });
  }

  names(): string[] {
    return this.state.get<string[]>(NAMES, []);
  }

  async all(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const env of this.names()) {
      const value = await this.secrets.get(PREFIX + env);
      if (value) {
        out[env] = value;
      }
    }
    return out;
  }

  async set(env: string, value: string): Promise<void> {
    if (!isEnvName(env)) {
      throw new Error(`not an environment variable name: ${env}`);
    }
    this.own.add(PREFIX + env);
    await this.secrets.store(PREFIX + env, value);
    const names = new Set(this.names());
    names.add(env);
    await this.state.update(NAMES, [...names].sort());
  }

  async remove(env: string): Promise<void> {
    this.own.add(PREFIX + env);
    await this.secrets.delete(PREFIX + env);
    await this.state.update(
      NAMES,
      this.names().filter((n) => n !== env),
    );
  }

  dispose(): void {
    this.subscription.dispose();
    this.changed.dispose();
  }
}
