/**
 * Questions to the user go through a Prompter, so the scripted session (tests) can answer them
 * while the commands run exactly as they do from the palette.
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

/** Answers questions from a queue: text for input boxes, a label (prefix) for quick picks. */
export class ScriptedPrompter implements Prompter {
  readonly asked: string[] = [];

  constructor(private readonly answers: (string | undefined)[] = []) {}

  push(...answers: (string | undefined)[]): void {
    this.answers.push(...answers);
  }

  input(options: vscode.InputBoxOptions): Thenable<string | undefined> {
    this.asked.push(options.prompt ?? options.title ?? "input");
    const answer = this.answers.shift();
    if (answer !== undefined && options.validateInput) {
      return Promise.resolve(options.validateInput(answer)).then((problem) => (problem ? undefined : answer));
    }
    return Promise.resolve(answer);
  }

  pick<T extends vscode.QuickPickItem>(items: T[], options: vscode.QuickPickOptions): Thenable<T | undefined> {
    this.asked.push(options.title ?? options.placeHolder ?? "pick");
    const answer = this.answers.shift();
    return Promise.resolve(answer === undefined ? undefined : items.find((i) => i.label.startsWith(answer)));
  }
}

/** Holds the prompter the commands use. */
export class Ui {
  constructor(public prompter: Prompter = windowPrompter) {}
}
