/**
 * Questions and notifications go through an injectable Prompter and Notifier, so another
 * extension (the test driver) can answer and observe them while the commands run exactly as
 * they do from the palette.
 */

import * as vscode from "vscode";

export interface Prompter {
  input(options: vscode.InputBoxOptions): Thenable<string | undefined>;
  pick<T extends vscode.QuickPickItem>(items: T[], options: vscode.QuickPickOptions): Thenable<T | undefined>;
}

export const windowPrompter: Prompter = {
  input: (options) => vscode.window.showInputBox(options),
  pick: (items, options) => vscode.window.showQuickPick(items, options),
};

export type NoticeKind = "info" | "warning" | "error";

export interface Notifier {
  show(kind: NoticeKind, message: string, ...actions: string[]): Thenable<string | undefined>;
}

export const windowNotifier: Notifier = {
  show: (kind, message, ...actions) =>
    kind === "error"
      ? vscode.window.showErrorMessage(message, ...actions)
      : kind === "warning"
        ? vscode.window.showWarningMessage(message, ...actions)
        : vscode.window.showInformationMessage(message, ...actions),
};

/** Holds the prompter and the notifier the commands use. */
export class Ui {
  constructor(
    public prompter: Prompter = windowPrompter,
    public notifier: Notifier = windowNotifier,
  ) {}

  notify(kind: NoticeKind, message: string, ...actions: string[]): Thenable<string | undefined> {
    return this.notifier.show(kind, message, ...actions);
  }
}
