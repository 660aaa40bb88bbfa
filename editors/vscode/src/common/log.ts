/** The "Phasewise" output channel: the language client's messages and which provider served what. */

import * as vscode from "vscode";

const KEPT_LINES = 200;

export class Log implements vscode.Disposable {
  readonly channel: vscode.LogOutputChannel;
  private readonly recent: string[] = [];

  constructor(name = "Phasewise") {
    this.channel = vscode.window.createOutputChannel(name, { log: true });
  }

  info(message: string): void {
    this.keep(message);
    this.channel.info(message);
  }

  warn(message: string): void {
    this.keep(message);
    this.channel.warn(message);
  }

  error(message: string): void {
    this.keep(message);
    this.channel.error(message);
  }

  /** The latest lines this extension wrote (not the server's), for the scripted session's report. */
  lines(): string[] {
    return [...this.recent];
  }

  show(): void {
    this.channel.show(true);
  }

  dispose(): void {
    this.channel.dispose();
  }

  private keep(message: string): void {
    this.recent.push(message);
    if (this.recent.length > KEPT_LINES) {
      this.recent.shift();
    }
  }
}
