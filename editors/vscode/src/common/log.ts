/**
 * The "Phasewise" output channel: the extension's own lines, the language client's and the
 * server's (its `window/logMessage` lines and its stderr), each once at its own level.
 *
 * The language client writes to `channel`, a LogOutputChannel that keeps the latest entries with
 * their level before handing them to VS Code's channel, so other extensions (and the test driver)
 * can read what the channel got through the exported API.
 */

import * as vscode from "vscode";

const KEPT_LINES = 400;

export type LogLevelName = "trace" | "debug" | "info" | "warn" | "error";

export interface LogEntry {
  level: LogLevelName;
  message: string;
}

/** Forwards to VS Code's LogOutputChannel and keeps the latest entries. */
class RecordingChannel implements vscode.LogOutputChannel {
  constructor(
    private readonly inner: vscode.LogOutputChannel,
    private readonly keep: (level: LogLevelName, message: string) => void,
  ) {}

  get name(): string {
    return this.inner.name;
  }
  get logLevel(): vscode.LogLevel {
    return this.inner.logLevel;
  }
  get onDidChangeLogLevel(): vscode.Event<vscode.LogLevel> {
    return this.inner.onDidChangeLogLevel;
  }
  trace(message: string, ...args: unknown[]): void {
    this.keep("trace", message);
    this.inner.trace(message, ...args);
  }
  debug(message: string, ...args: unknown[]): void {
    this.keep("debug", message);
    this.inner.debug(message, ...args);
  }
  info(message: string, ...args: unknown[]): void {
    this.keep("info", message);
    this.inner.info(message, ...args);
  }
  warn(message: string, ...args: unknown[]): void {
    this.keep("warn", message);
    this.inner.warn(message, ...args);
  }
  error(error: string | Error, ...args: unknown[]): void {
    this.keep("error", typeof error === "string" ? error : error.message);
    this.inner.error(error, ...args);
  }
  append(value: string): void {
    this.keep("info", value);
    this.inner.append(value);
  }
  appendLine(value: string): void {
    this.keep("info", value);
    this.inner.appendLine(value);
  }
  replace(value: string): void {
    this.inner.replace(value);
  }
  clear(): void {
    this.inner.clear();
  }
  show(columnOrPreserveFocus?: vscode.ViewColumn | boolean, preserveFocus?: boolean): void {
    if (typeof columnOrPreserveFocus === "boolean" || columnOrPreserveFocus === undefined) {
      this.inner.show(columnOrPreserveFocus);
    } else {
      this.inner.show(columnOrPreserveFocus, preserveFocus);
    }
  }
  hide(): void {
    this.inner.hide();
  }
  dispose(): void {
    this.inner.dispose();
  }
}

export class Log implements vscode.Disposable {
  readonly channel: vscode.LogOutputChannel;
  private readonly recent: LogEntry[] = [];

  constructor(name = "Phasewise") {
    this.channel = new RecordingChannel(vscode.window.createOutputChannel(name, { log: true }), (level, message) =>
      this.keep(level, message),
    );
  }

  trace(message: string): void {
    this.channel.trace(message);
  }

  info(message: string): void {
    this.channel.info(message);
  }

  warn(message: string): void {
    this.channel.warn(message);
  }

  error(message: string): void {
    this.channel.error(message);
  }

  /** The latest messages the channel got, from the extension, the client and the server. */
  lines(): string[] {
    return this.recent.map((e) => e.message);
  }

  /** The latest entries with their level. */
  entries(): LogEntry[] {
    return this.recent.map((e) => ({ ...e }));
  }

  show(): void {
    this.channel.show(true);
  }

  dispose(): void {
    this.channel.dispose();
  }

  private keep(level: LogLevelName, message: string): void {
    this.recent.push({ level, message });
    if (this.recent.length > KEPT_LINES) {
      this.recent.shift();
    }
  }
}
