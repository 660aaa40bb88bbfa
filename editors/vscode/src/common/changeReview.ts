/**
 * The code phase's change, shown as a diff the user applies or discards before anything lands.
 *
 * With `phasewise.phases.code.confirm` (on by default) the server's `workspace/applyEdit` carries a
 * change annotation with `needsConfirmation`. VS Code's own Refactor Preview shows such edits
 * unchecked, with Apply greyed out until each is ticked; so the extension takes these requests
 * itself (vscode-languageclient's `handleApplyEdit` middleware): it opens the change as a diff (a
 * diff editor for one file, the multi-file diff editor for several; new files against an empty
 * side), and asks once: Apply and Discard in the editor title (and the palette) while the change
 * is pending, with a notification saying so (the phase's own notification has the one Cancel,
 * which discards it). Apply hands the edit, without the confirmation, to
 * vscode-languageclient, which checks every open document's version and applies all files at once;
 * Discard answers `applied: false` and nothing is changed. Edits without `needsConfirmation` are
 * applied as before.
 */

import * as vscode from "vscode";
import {
  CancellationToken,
  ResponseError,
  type ApplyWorkspaceEditParams,
  type ApplyWorkspaceEditRequest,
  type ApplyWorkspaceEditResult,
  type Range,
  type WorkspaceEdit,
} from "vscode-languageclient/node";

import type { Log } from "./log";

export const PROPOSED_SCHEME = "phasewise-proposed";
export const CHANGE_COMMANDS = { apply: "phasewise.applyChange", discard: "phasewise.discardChange" } as const;
const PENDING_CONTEXT = "phasewise.changePending";

/** One file of a change: where it is, and its text before and after. */
export interface FileProposal {
  uri: vscode.Uri;
  /** Workspace-relative path, as the user reads it. */
  path: string;
  before: string;
  after: string;
  created: boolean;
}

/** A change waiting for the user's answer (what the test driver reads). */
export interface PendingChange {
  readonly id: number;
  readonly label: string;
  readonly files: readonly FileProposal[];
  /** The question asked, as shown in the notification. */
  readonly question: string;
}

type Decision = { apply: true } | { apply: false; reason: string };
/** An LSP text edit as `workspace/applyEdit` may carry it (plain, annotated or snippet). */
type AnyTextEdit = { range: Range; newText: string } | { range: Range; snippet: { value: string } };

/** Whether any change annotation of the edit asks for the user's confirmation. */
export function needsConfirmation(edit: WorkspaceEdit): boolean {
  return Object.values(edit.changeAnnotations ?? {}).some((a) => a.needsConfirmation === true);
}

function withoutConfirmation(edit: WorkspaceEdit): WorkspaceEdit {
  if (!edit.changeAnnotations) {
    return edit;
  }
  const annotations = Object.fromEntries(
    Object.entries(edit.changeAnnotations).map(([id, a]) => [id, { ...a, needsConfirmation: false }]),
  );
  return { ...edit, changeAnnotations: annotations };
}

/** Offsets (UTF-16 code units, as LSP positions and JS strings count) where each line starts. */
function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 10 || (ch === 13 && text.charCodeAt(i + 1) !== 10)) {
      starts.push(i + 1);
    }
  }
  return starts;
}

/** `text` with LSP `edits` applied (non-overlapping, as the protocol requires). */
export function applyTextEdits(text: string, edits: readonly AnyTextEdit[]): string {
  const starts = lineStarts(text);
  const offset = (p: { line: number; character: number }) => {
    if (p.line >= starts.length) {
      return text.length;
    }
    const end = p.line + 1 < starts.length ? starts[p.line + 1] : text.length;
    return Math.min(starts[p.line] + p.character, end);
  };
  const spans = edits
    .map((e) => ({
      start: offset(e.range.start),
      end: offset(e.range.end),
      text: "newText" in e ? e.newText : e.snippet.value,
    }))
    .sort((a, b) => b.start - a.start || b.end - a.end);
  let out = text;
  for (const s of spans) {
    out = out.slice(0, s.start) + s.text + out.slice(s.end);
  }
  return out;
}

async function currentText(uri: vscode.Uri): Promise<{ text: string; version: number | undefined } | undefined> {
  const open = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
  if (open) {
    return { text: open.getText(), version: open.version };
  }
  try {
    return { text: new TextDecoder("utf-8").decode(await vscode.workspace.fs.readFile(uri)), version: undefined };
  } catch {
    return undefined;
  }
}

/**
 * Every file of the edit with its text before and after, or why the change cannot be shown (an open
 * document already moved past the version the change was computed on, a file to edit is gone).
 */
export async function proposals(edit: WorkspaceEdit): Promise<FileProposal[] | string> {
  const byUri = new Map<string, FileProposal>();
  const relative = (uri: vscode.Uri) => vscode.workspace.asRelativePath(uri, false);
  const entries: { uri: string; edits: AnyTextEdit[]; version?: number | null; create?: boolean }[] = [];
  for (const change of edit.documentChanges ?? []) {
    if ("textDocument" in change) {
      entries.push({ uri: change.textDocument.uri, edits: change.edits, version: change.textDocument.version });
    } else if (change.kind === "create") {
      entries.push({ uri: change.uri, edits: [], create: true });
    } else {
      return `it ${change.kind === "rename" ? "renames" : "deletes"} a file, which this review cannot show`;
    }
  }
  for (const [uri, edits] of Object.entries(edit.changes ?? {})) {
    entries.push({ uri, edits });
  }
  for (const entry of entries) {
    const uri = vscode.Uri.parse(entry.uri);
    let file = byUri.get(uri.toString());
    if (!file) {
      const now = entry.create ? { text: "", version: undefined } : await currentText(uri);
      if (now === undefined) {
        return `${relative(uri)} cannot be read`;
      }
      if (typeof entry.version === "number" && now.version !== undefined && now.version !== entry.version) {
        return `${relative(uri)} changed in the editor (version ${entry.version} → ${now.version})`;
      }
      file = { uri, path: relative(uri), before: now.text, after: now.text, created: entry.create === true };
      byUri.set(uri.toString(), file);
    }
    file.after = applyTextEdits(file.after, entry.edits);
  }
  return [...byUri.values()];
}

/** The first file (its path) that is no longer what the diff showed it to be, if any. */
async function movedOn(files: readonly FileProposal[]): Promise<string | undefined> {
  for (const file of files) {
    const now = await currentText(file.uri);
    if (file.created ? now !== undefined : now?.text !== file.before) {
      return file.path;
    }
  }
  return undefined;
}

/** An editor tab's place: which file, in which group. */
interface Place {
  uri: vscode.Uri;
  column: vscode.ViewColumn;
}

/** The file the user works on: the active file editor, else a tab of one of the change's files. */
function workedOn(files: readonly FileProposal[]): Place | undefined {
  const active = vscode.window.activeTextEditor;
  if (active?.document.uri.scheme === "file" && active.viewColumn !== undefined) {
    return { uri: active.document.uri, column: active.viewColumn };
  }
  const wanted = new Set(files.map((f) => f.uri.toString()));
  for (const group of vscode.window.tabGroups.all) {
    for (const tab of [group.activeTab, ...group.tabs]) {
      if (tab?.input instanceof vscode.TabInputText && wanted.has(tab.input.uri.toString())) {
        return { uri: tab.input.uri, column: group.viewColumn };
      }
    }
  }
  return undefined;
}

/** Asks before a change with `needsConfirmation` lands; see the module's comment. */
export class ChangeReview implements vscode.Disposable {
  private current: { change: PendingChange; decide: (d: Decision) => void } | undefined;
  private readonly texts = new Map<string, string>();
  private count = 0;
  private readonly disposables: vscode.Disposable[] = [];
  private readonly shownEmitter = new vscode.EventEmitter<PendingChange>();
  /** A change is shown and waits for the user. */
  readonly onDidShow = this.shownEmitter.event;

  constructor(private readonly log: Log) {
    this.disposables.push(
      vscode.workspace.registerTextDocumentContentProvider(PROPOSED_SCHEME, {
        provideTextDocumentContent: (uri) => this.texts.get(uri.toString()) ?? "",
      }),
      vscode.commands.registerCommand(CHANGE_COMMANDS.apply, () => this.apply()),
      vscode.commands.registerCommand(CHANGE_COMMANDS.discard, () => this.discard()),
      this.shownEmitter,
    );
  }

  /** The change waiting for an answer, if any. */
  get pending(): PendingChange | undefined {
    return this.current?.change;
  }

  /** Applies the pending change (the Apply button); false when none is pending. */
  apply(): boolean {
    const current = this.current;
    current?.decide({ apply: true });
    return current !== undefined;
  }

  /** Discards the pending change (the Discard button); false when none is pending. */
  discard(reason = "declined by the user in the diff review"): boolean {
    const current = this.current;
    current?.decide({ apply: false, reason });
    return current !== undefined;
  }

  /** vscode-languageclient's `workspace.handleApplyEdit` middleware. */
  async handle(
    params: ApplyWorkspaceEditParams,
    next: ApplyWorkspaceEditRequest.HandlerSignature,
  ): Promise<ApplyWorkspaceEditResult | ResponseError<void>> {
    if (!needsConfirmation(params.edit)) {
      return next(params, CancellationToken.None);
    }
    this.discard("superseded by a newer change before it was applied");
    const files = await proposals(params.edit);
    if (typeof files === "string") {
      this.log.warn(`a change was not shown: ${files}`);
      return { applied: false, failureReason: files };
    }
    const id = ++this.count;
    const label = params.label ?? Object.values(params.edit.changeAnnotations ?? {})[0]?.label ?? "Phasewise";
    const names = files.map((f) => f.path + (f.created ? " (new)" : ""));
    const question =
      `Review the change to ${names.join(", ")}, then Apply it or Discard it (the diff's title bar, ` +
      `or the palette).`;
    const change: PendingChange = { id, label, files, question };
    const decided = new Promise<Decision>((resolve) => {
      this.current = { change, decide: resolve };
    });
    const back = workedOn(files); // where the user was, to return to after the diff
    const shown = await this.show(change, back);
    await vscode.commands.executeCommand("setContext", PENDING_CONTEXT, true);
    // A progress notification, not a message with buttons: it closes once the change is decided,
    // however it was (the title bar's buttons, the palette, the phase cancelled), so it never goes
    // stale. No Cancel of its own: the phase's notification has the one Cancel, which discards too.
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: label, cancellable: false },
      (progress) => {
        progress.report({ message: question });
        return decided;
      },
    );
    this.shownEmitter.fire(change);
    const decision = await decided;
    if (this.current?.change.id === id) {
      // (a newer change, if one superseded this, is pending now: its state stays)
      this.current = undefined;
      await vscode.commands.executeCommand("setContext", PENDING_CONTEXT, false);
    }
    await this.close(shown);
    if (back) {
      await vscode.window.showTextDocument(back.uri, { viewColumn: back.column, preview: false });
    }
    if (!decision.apply) {
      this.log.info(`${label}: change to ${names.join(", ")} discarded (${decision.reason})`);
      return { applied: false, failureReason: decision.reason };
    }
    const moved = await movedOn(files);
    if (moved) {
      const reason = `${moved} changed while the change was shown for review`;
      this.log.warn(`${label}: ${reason}`);
      return { applied: false, failureReason: reason };
    }
    const result = await next({ ...params, edit: withoutConfirmation(params.edit) }, CancellationToken.None);
    const applied = !(result instanceof ResponseError) && result.applied;
    this.log.info(`${label}: change to ${names.join(", ")} ${applied ? "applied" : "not applied"}`);
    return result;
  }

  /** Opens the diff; the proposed (virtual) documents it shows, to close and forget afterwards. */
  private async show(change: PendingChange, home: Place | undefined): Promise<string[]> {
    const made: string[] = [];
    const proposed = (file: FileProposal, side: "before" | "after") => {
      // the file's own path, so the diff reads as a change to it (not a rename); the query tells them apart
      const uri = file.uri.with({ scheme: PROPOSED_SCHEME, query: `change=${change.id}&side=${side}` });
      this.texts.set(uri.toString(), side === "after" ? file.after : file.before);
      made.push(uri.toString());
      return uri;
    };
    const triples = change.files.map((f) => [f.uri, f.created ? proposed(f, "before") : f.uri, proposed(f, "after")]);
    try {
      if (home) {
        // in the group of the file worked on (a plan beside it stays in view), that file's tab
        // kept (a preview tab would be replaced by the diff)
        await vscode.window.showTextDocument(home.uri, { viewColumn: home.column, preview: false });
        await vscode.commands.executeCommand("workbench.action.keepEditor");
      }
      if (triples.length === 1) {
        const [, left, right] = triples[0];
        const title = `${change.label}: ${change.files[0].path} (proposed)`;
        await vscode.commands.executeCommand("vscode.diff", left, right, title, { preview: false });
      } else {
        await vscode.commands.executeCommand("vscode.changes", `${change.label}: proposed change`, triples);
      }
    } catch (err) {
      this.log.warn(`the diff could not be opened: ${err instanceof Error ? err.message : String(err)}`);
    }
    return made;
  }

  private async close(made: string[]): Promise<void> {
    const ours = (value: unknown) => value instanceof vscode.Uri && made.includes(value.toString());
    const tabs = vscode.window.tabGroups.all.flatMap((g) =>
      g.tabs.filter((tab) => {
        const input = tab.input as { modified?: unknown; textDiffs?: { modified?: unknown }[] } | undefined;
        return ours(input?.modified) || (input?.textDiffs ?? []).some((d) => ours(d.modified));
      }),
    );
    if (tabs.length > 0) {
      await vscode.window.tabGroups.close(tabs);
    }
    for (const uri of made) {
      this.texts.delete(uri);
    }
  }

  dispose(): void {
    this.discard("the extension was deactivated");
    vscode.Disposable.from(...this.disposables).dispose();
  }
}
