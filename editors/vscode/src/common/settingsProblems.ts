/**
 * Settings problems where they are typed: the server's settings issues (`phasewise.status`'s
 * `settingsIssues`, each a key path and what was expected) as diagnostics on the workspace's
 * `.vscode/settings.json`, at the key they concern, instead of a notification for every value
 * typed on the way to a valid one. An issue whose key is not in that file (user settings) stays in
 * the status bar item's tooltip and the output channel.
 */

import * as vscode from "vscode";

import { SECTION } from "./constants";
import type { StatusReport } from "./protocol";

export const SETTINGS_SOURCE = "phasewise-settings";

/** The range of the last key of `path` (`phasewise.phases.code.model`) in a settings file's text. */
export function keyRange(text: string, path: string): { start: number; end: number } | undefined {
  const segments = path.replace(/\[\d+\]/g, "").split(".");
  // settings.json writes the first keys joined ("phasewise.phases": {...}): the longest that is there
  for (let joined = segments.length; joined >= 1; joined--) {
    const first = `"${segments.slice(0, joined).join(".")}"`;
    let at = text.indexOf(first);
    if (at < 0) {
      continue;
    }
    let end = at + first.length;
    for (const segment of segments.slice(joined)) {
      const next = text.indexOf(`"${segment}"`, end);
      if (next < 0) {
        break; // the deepest key written: the issue is about what it holds
      }
      at = next;
      end = next + segment.length + 2;
    }
    return { start: at, end };
  }
  return undefined;
}

export class SettingsProblems implements vscode.Disposable {
  private readonly collection = vscode.languages.createDiagnosticCollection(SETTINGS_SOURCE);

  /** Shows the report's settings issues on each workspace folder's `.vscode/settings.json`. */
  async show(report: StatusReport): Promise<void> {
    const issues = (report.settingsIssues ?? []).filter((i) => i.path.startsWith(`${SECTION}.`));
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      const file = vscode.Uri.joinPath(folder.uri, ".vscode", "settings.json");
      let doc: vscode.TextDocument;
      try {
        doc = await vscode.workspace.openTextDocument(file);
      } catch {
        this.collection.delete(file);
        continue; // no such file
      }
      const text = doc.getText();
      const diagnostics = issues.flatMap((issue) => {
        const at = keyRange(text, issue.path);
        if (!at) {
          return [];
        }
        const range = new vscode.Range(doc.positionAt(at.start), doc.positionAt(at.end));
        const diagnostic = new vscode.Diagnostic(
          range,
          `${issue.path}: ${issue.message.replace(/`/g, "")}`,
          vscode.DiagnosticSeverity.Warning,
        );
        diagnostic.source = SETTINGS_SOURCE;
        return [diagnostic];
      });
      this.collection.set(file, diagnostics);
    }
  }

  dispose(): void {
    this.collection.dispose();
  }
}
