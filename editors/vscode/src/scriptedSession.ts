/**
 * A scripted session for the end-to-end test (tests/editors/test_vscode.py), run on activation
 * only when `PHASEWISE_TEST_REPORT` names a file: it drives the real palette commands (answering
 * their input boxes through a ScriptedPrompter) and writes what VS Code showed as JSON.
 *
 * `PHASEWISE_TEST_FILE` (workspace-relative, default `app.py`) is the file worked on;
 * `PHASEWISE_TEST_SECRET` is the key the session enters when the missing-key quick fix asks.
 */

import * as fs from "node:fs";
import * as vscode from "vscode";

import { COMMANDS } from "./common/commands";
import { PLAN_SCHEME, PROBLEM_SOURCE, REPORT_SCHEME, REVIEW_SOURCE } from "./common/constants";
import { phaseResultsIn, type PhaseResult } from "./common/protocol";
import { ScriptedPrompter } from "./common/ui";
import type { PhasewiseApi } from "./extension";

const WAIT_MS = 30_000;
const POLL_MS = 50;

/** Polls `probe` until it returns something (bounded); undefined when time ran out. */
async function waitFor<T>(probe: () => T | undefined | Promise<T | undefined>, ms = WAIT_MS): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined || Date.now() > deadline) {
      return value;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function diagnosticsView(uri: vscode.Uri) {
  return vscode.languages.getDiagnostics(uri).map((d) => ({
    source: d.source,
    code: typeof d.code === "object" ? String(d.code.value) : d.code,
    message: d.message,
    severity: d.severity,
    line: d.range.start.line,
  }));
}

export async function runScriptedSession(api: PhasewiseApi, reportPath: string): Promise<void> {
  const started = Date.now();
  const report: Record<string, unknown> = {
    finished: false,
    steps: [] as string[],
    trusted: vscode.workspace.isTrusted,
  };
  const steps = report.steps as string[];
  const write = () => fs.writeFileSync(reportPath, JSON.stringify(report, null, 2));
  const step = (name: string) => {
    steps.push(`${name} +${Date.now() - started} ms`);
    write();
  };
  const prompter = new ScriptedPrompter();
  api.ui.prompter = prompter;
  try {
    step("activated");
    const client = await api.server.ensureStarted();
    report.serverState = api.server.state;
    report.serverVersion = api.server.serverVersion();
    report.launch = api.server.launch;
    if (!client) {
      report.unavailable = api.server.unavailableMessage();
      report.statusBarText = api.statusBar.text;
      return;
    }
    step("server running");
    const folder = vscode.workspace.workspaceFolders?.[0];
    if (!folder) {
      throw new Error("no workspace folder open");
    }
    const file = vscode.Uri.joinPath(folder.uri, process.env.PHASEWISE_TEST_FILE ?? "app.py");
    const doc = await vscode.workspace.openTextDocument(file);
    await vscode.window.showTextDocument(doc);
    const original = doc.getText();
    step("file opened");

    report.statusBefore = await api.commands.refreshStatus(file);
    report.statusBarBefore = api.statusBar.text;

    // Plan, from the palette command: the input box is answered, the plan document streams.
    const instruction = "Rename load to read_file";
    prompter.push(instruction);
    const plan = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan);
    // The document re-reads its content after each change event: wait for the final version.
    const planDoc = await waitFor(() =>
      vscode.workspace.textDocuments.find(
        (d) => d.uri.scheme === PLAN_SCHEME && /served by|failed by/.test(d.getText()),
      ),
    );
    const planEntry = planDoc ? api.documents.planEntry(planDoc.uri) : undefined;
    report.plan = {
      result: plan,
      document: planDoc
        ? { uri: planDoc.uri.toString(), languageId: planDoc.languageId, text: planDoc.getText() }
        : null,
      streamedChunks: planEntry?.chunks ?? 0,
    };
    step("plan done");

    // Code without its key: the problem diagnostic and its quick fixes.
    prompter.push(instruction); // the plan's instruction: the code phase follows the plan
    const failedCode = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    const problem = await waitFor(() =>
      vscode.languages
        .getDiagnostics(file)
        .find((d) => d.source === PROBLEM_SOURCE && d.code === "missing-credentials"),
    );
    const actions = problem
      ? await vscode.commands.executeCommand<vscode.CodeAction[]>(
          "vscode.executeCodeActionProvider",
          file,
          problem.range,
        )
      : [];
    const fixes = actions.map((a) => ({
      title: a.title,
      command: a.command?.command,
      arguments: a.command?.arguments as unknown[] | undefined,
    }));
    report.missingKey = {
      result: failedCode,
      diagnostic: problem
        ? { message: problem.message, code: problem.code, source: problem.source, line: problem.range.start.line }
        : null,
      quickFixes: fixes,
    };
    step("missing key shown");

    // The quick fix's own command, its password box answered: SecretStorage, then setKeys.
    const setKey = fixes.find((f) => f.command === COMMANDS.setApiKey);
    if (setKey) {
      prompter.push(process.env.PHASEWISE_TEST_SECRET ?? "e2e-secret");
      report.keySet = await vscode.commands.executeCommand(setKey.command!, ...(setKey.arguments ?? []));
    }
    step("key set");

    prompter.push(instruction);
    const code = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    const changed = await waitFor(() => (doc.getText() !== original ? true : undefined), 10_000);
    const cleared = await waitFor(
      () =>
        vscode.languages
          .getDiagnostics(file)
          .some((d) => d.source === PROBLEM_SOURCE && d.code === "missing-credentials")
          ? undefined
          : true,
      10_000,
    );
    report.code = {
      result: code,
      documentChanged: changed === true,
      problemCleared: cleared === true,
      text: doc.getText(),
    };
    step("code done");

    prompter.push("");
    const review = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.review);
    const findings = await waitFor(() => {
      const found = vscode.languages.getDiagnostics(file).filter((d) => d.source === REVIEW_SOURCE);
      return found.length > 0 ? found : undefined;
    }, 10_000);
    report.review = { result: review, findings: (findings ?? []).length };
    step("review done");

    // The workflow commands, where this server has them.
    const reportDoc = (title: string) =>
      waitFor(
        () =>
          vscode.workspace.textDocuments
            .find((d) => d.uri.scheme === REPORT_SCHEME && d.uri.path.startsWith(`/${title}`) && d.getText() !== "")
            ?.getText(),
        10_000,
      );
    if (api.server.supports(COMMANDS.run)) {
      prompter.push("Add type hints to Store.get");
      const run = await vscode.commands.executeCommand<unknown>(COMMANDS.run);
      report.run = {
        ok: (run as { ok?: unknown } | undefined)?.ok,
        phases: phaseResultsIn(run).map((r) => ({ phase: r.phase, ok: r.ok, provider: r.provider, model: r.model })),
      };
      step("run done");
    }
    if (api.server.supports(COMMANDS.verify)) {
      const verified = await vscode.commands.executeCommand<unknown>(COMMANDS.verify);
      report.verify = {
        ok: (verified as { ok?: unknown } | undefined)?.ok,
        document: await reportDoc("Phasewise providers"),
      };
      step("verify done");
    }
    if (api.server.supports(COMMANDS.compare)) {
      prompter.push("plan", "e2e-planner/claude-sim, e2e-reviewer/gpt-sim", "Summarise the module");
      const compared = await vscode.commands.executeCommand<unknown>(COMMANDS.compare);
      report.compare = {
        ok: (compared as { ok?: unknown } | undefined)?.ok,
        results: phaseResultsIn(compared).map((r) => ({ ok: r.ok, provider: r.provider, model: r.model })),
        document: await reportDoc("Phasewise compare plan"),
      };
      step("compare done");
    }

    report.statusAfter = await api.commands.refreshStatus(file);
    report.statusBarAfter = api.statusBar.text;
    report.diagnostics = diagnosticsView(file);
    report.asked = prompter.asked;
    await doc.save();
  } catch (err) {
    report.error = err instanceof Error ? `${err.message}\n${err.stack ?? ""}` : String(err);
  } finally {
    report.output = api.log.lines();
    report.elapsedMs = Date.now() - started;
    report.finished = true;
    write();
  }
}
