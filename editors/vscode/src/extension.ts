/**
 * Phasewise for VS Code: a thin client of the `phasewise` language server. It starts the server
 * (in trusted workspaces only), keeps API keys in SecretStorage and hands them over in memory,
 * and adds palette commands, a status bar item, streamed plan documents and an output channel.
 * Progress, cancellation, diagnostics and quick fixes come from the server through
 * vscode-languageclient.
 */

import * as vscode from "vscode";

import { CHANGE_COMMANDS, ChangeReview } from "./common/changeReview";
import { COMMANDS, Commands } from "./common/commands";
import { PhasewiseDocuments } from "./common/documents";
import { ManagedEnvironment } from "./common/install";
import { KeyStore } from "./common/keys";
import { Log } from "./common/log";
import type { ProgressBoard } from "./common/progress";
import { ServerManager } from "./common/server";
import { SettingsProblems } from "./common/settingsProblems";
import { StatusBar } from "./common/statusBar";
import { Ui } from "./common/ui";

let manager: ServerManager | undefined;

/** What the extension exports to other extensions (the test driver in test/ drives it through this). */
export interface PhasewiseApi {
  readonly server: ServerManager;
  readonly commands: Commands;
  readonly documents: PhasewiseDocuments;
  readonly statusBar: StatusBar;
  readonly log: Log;
  readonly ui: Ui;
  readonly progress: ProgressBoard;
  readonly review: ChangeReview;
  readonly managed: ManagedEnvironment;
}

export function activate(context: vscode.ExtensionContext): PhasewiseApi {
  const log = new Log();
  const keys = new KeyStore(context.secrets, context.globalState);
  const documents = new PhasewiseDocuments();
  const statusBar = new StatusBar();
  const ui = new Ui();
  const review = new ChangeReview(log);
  const managed = new ManagedEnvironment(
    context.globalStorageUri,
    context.extensionPath,
    (context.extension.packageJSON as { version: string }).version,
    log,
  );
  const server = new ServerManager(
    log,
    keys,
    new Set([...Object.values(COMMANDS), ...Object.values(CHANGE_COMMANDS)]),
    review,
    ui,
    managed,
  );
  manager = server;
  const settingsProblems = new SettingsProblems();
  const commands = new Commands(server, documents, keys, log, ui, statusBar, review, settingsProblems);
  context.subscriptions.push(log, keys, documents, statusBar, server, review, settingsProblems, ...commands.register());

  let refresh: NodeJS.Timeout | undefined;
  const refreshSoon = () => {
    clearTimeout(refresh);
    refresh = setTimeout(() => void commands.refreshStatus(), 300);
  };
  context.subscriptions.push(
    server.onStreamText((params) => documents.onStream(params)),
    server.onStep((params) => documents.onStep(params)),
    server.onDidChangeState((state) => {
      statusBar.showState(state, server.lastError);
      if (state === "running") {
        refreshSoon();
      }
    }),
    server.onDidChangeSettings(refreshSoon),
    vscode.window.onDidChangeActiveTextEditor(refreshSoon),
    { dispose: () => clearTimeout(refresh) },
  );

  context.subscriptions.push(server.progress.onStatus((status) => documents.onRunStatus(status)));
  void server.ensureStarted().then((client) => {
    if (!client && server.state !== "untrusted") {
      void vscode.commands.executeCommand(COMMANDS.status);
    }
  });
  return { server, commands, documents, statusBar, log, ui, progress: server.progress, review, managed };
}

export async function deactivate(): Promise<void> {
  await manager?.stop();
}
