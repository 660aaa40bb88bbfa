/**
 * The test driver for tests/editors/test_vscode.py: a separate extension (never shipped with
 * Phasewise) that depends on it and drives it through its exported API. On activation, when
 * `PHASEWISE_TEST_REPORT` names a file, it runs a scripted session: the real palette commands,
 * their questions answered by a ScriptedPrompter, their notifications recorded (and still shown),
 * and writes what VS Code showed as JSON.
 *
 * `PHASEWISE_TEST_FILE` (workspace-relative, default `app.py`) is the file worked on;
 * `PHASEWISE_TEST_SECRET` is the key the session enters when the missing-key quick fix asks.
 */

import * as fs from "node:fs";
import * as vscode from "vscode";

import type { PhasewiseApi } from "../../out/extension";
import type { Prompter } from "../../out/common/ui";

const EXTENSION_ID = "phasewise.phasewise";
const COMMANDS = {
  plan: "phasewise.plan",
  code: "phasewise.code",
  review: "phasewise.review",
  run: "phasewise.run",
  verify: "phasewise.verify",
  compare: "phasewise.compare",
  retry: "phasewise.retry",
  runPhase: "phasewise.phase",
  setApiKey: "phasewise.setApiKey",
} as const;
/** What the diff title bar's ✓ and discard buttons run. */
const CHANGE = { apply: "phasewise.applyChange", discard: "phasewise.discardChange" } as const;
const PLAN_SCHEME = "phasewise-plan";
const REPORT_SCHEME = "phasewise-report";
const PROBLEM_SOURCE = "phasewise";
const REVIEW_SOURCE = "phasewise-review";

interface PhaseResult {
  ok: boolean;
  phase: string;
  provider: string | null;
  model: string | null;
  text: string;
  error: { kind: string; message: string } | null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function phaseResultsIn(value: unknown, depth = 0): PhaseResult[] {
  if (depth > 4) {
    return [];
  }
  if (isObject(value) && typeof value.ok === "boolean" && typeof value.phase === "string" && "provider" in value) {
    return [value as unknown as PhaseResult];
  }
  const children = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : [];
  return children.flatMap((child) => phaseResultsIn(child, depth + 1));
}

/** Answers questions from a queue: text for input boxes, a label (prefix) for quick picks. */
class ScriptedPrompter implements Prompter {
  readonly asked: string[] = [];
  /** Each input box as shown: its title and the value it offered. */
  readonly inputs: { title?: string; prompt?: string; value?: string }[] = [];
  /** The labels of each quick pick shown, in order. */
  readonly offered: string[][] = [];

  constructor(private readonly answers: (string | undefined)[] = []) {}

  push(...answers: (string | undefined)[]): void {
    this.answers.push(...answers);
  }

  input(options: vscode.InputBoxOptions): Thenable<string | undefined> {
    this.asked.push(options.prompt ?? options.title ?? "input");
    this.inputs.push({ title: options.title, prompt: options.prompt, value: options.value });
    const answer = this.answers.shift();
    if (answer !== undefined && options.validateInput) {
      return Promise.resolve(options.validateInput(answer)).then((problem) => (problem ? undefined : answer));
    }
    return Promise.resolve(answer);
  }

  pick<T extends vscode.QuickPickItem>(items: T[], options: vscode.QuickPickOptions): Thenable<T | undefined> {
    this.asked.push(options.title ?? options.placeHolder ?? "pick");
    this.offered.push(items.map((i) => i.label));
    const answer = this.answers.shift();
    return Promise.resolve(answer === undefined ? undefined : items.find((i) => i.label.startsWith(answer)));
  }
}

interface Notice {
  kind: string;
  message: string;
  actions: string[];
  /** The action the session clicked, when it answered the notification itself. */
  clicked?: string;
}

/** Clicks one of a notification's actions as the user would; undefined leaves it to the user. */
type Clicker = (message: string, actions: string[]) => string | undefined;

/** The clicker, and whether a notification it clicks closes (as a user's click closes it) or stays shown. */
interface ClickerSlot {
  click?: Clicker;
  closeClicked?: boolean;
}

/** What the editor area shows: each tab's label and what it is (a text editor, a preview, …). */
function tabsView() {
  return vscode.window.tabGroups.all.flatMap((group) =>
    group.tabs.map((tab) => {
      const input = tab.input;
      const diffs = (input as { textDiffs?: vscode.TabInputTextDiff[] } | undefined)?.textDiffs;
      const kind =
        input instanceof vscode.TabInputText
          ? `text:${input.uri.scheme}`
          : input instanceof vscode.TabInputWebview
            ? `webview:${input.viewType}`
            : input instanceof vscode.TabInputTextDiff
              ? `diff:${input.original.scheme}→${input.modified.scheme}`
              : Array.isArray(diffs)
                ? `multidiff:${diffs.map((d) => `${d.original.scheme}→${d.modified.scheme}`).join(",")}`
                : "other";
      return { label: tab.label, kind };
    }),
  );
}

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

export async function activate(): Promise<void> {
  const reportPath = process.env.PHASEWISE_TEST_REPORT;
  if (!reportPath) {
    return;
  }
  const extension = vscode.extensions.getExtension<PhasewiseApi>(EXTENSION_ID);
  if (!extension) {
    fs.writeFileSync(reportPath, JSON.stringify({ finished: true, error: `${EXTENSION_ID} is not installed` }));
    return;
  }
  const api = await extension.activate();
  void runScriptedSession(api, reportPath);
}

async function runScriptedSession(api: PhasewiseApi, reportPath: string): Promise<void> {
  const started = Date.now();
  const report: Record<string, unknown> = {
    finished: false,
    steps: [] as string[],
    trusted: vscode.workspace.isTrusted,
  };
  const steps = report.steps as string[];
  const write = () => fs.writeFileSync(reportPath, JSON.stringify(report, null, 2));
  /** Asks the test for a screenshot of the browser now (`PHASEWISE_TEST_SHOTS`) and waits for it. */
  const shoot = async (name: string) => {
    const dir = process.env.PHASEWISE_TEST_SHOTS;
    if (!dir) {
      return;
    }
    report.shoot = name;
    write();
    await waitFor(() => (fs.existsSync(`${dir}/${name}.done`) ? true : undefined), 60_000);
  };
  const step = (name: string) => {
    steps.push(`${name} +${Date.now() - started} ms`);
    write();
  };
  const prompter = new ScriptedPrompter();
  api.ui.prompter = prompter;
  const notices: Notice[] = [];
  const shown = api.ui.notifier;
  const clicker: ClickerSlot = {};
  api.ui.notifier = {
    show: (kind, message, ...actions) => {
      const clicked = clicker.click?.(message, actions);
      notices.push({ kind, message, actions, ...(clicked === undefined ? {} : { clicked }) });
      if (clicked !== undefined && clicker.closeClicked) {
        return Promise.resolve(clicked);
      }
      const shownNow = shown.show(kind, message, ...actions);
      return clicked === undefined ? shownNow : Promise.resolve(clicked);
    },
  };
  try {
    step("activated");
    if (process.env.PHASEWISE_TEST_SCENARIO === "install") {
      await installSession({ api, report, step, shoot, notices, clicker, prompter });
      return;
    }
    if (process.env.PHASEWISE_TEST_SCENARIO === "version") {
      await versionSession(api, report, step, notices, clicker);
      return;
    }
    const client = await api.server.ensureStarted();
    report.serverState = api.server.state;
    report.serverVersion = api.server.serverVersion();
    report.launch = api.server.launch;
    if (!client) {
      report.unavailable = api.server.unavailableMessage();
      report.statusBarText = api.statusBar.text;
      if (api.server.state === "not-found") {
        // what the user sees: the notification (activation shows the status), then its Open Settings
        report.unavailableNotices = await waitFor(() => (notices.length > 0 ? [...notices] : undefined), 10_000);
        await shoot("server-not-found");
        await vscode.commands.executeCommand("phasewise.openSettings", { setting: "phasewise.server" });
        report.settingsTabs = await waitFor(() => {
          const tabs = tabsView().filter((t) => t.label.toLowerCase().includes("settings"));
          return tabs.length > 0 ? tabs : undefined;
        }, 10_000);
        await shoot("server-not-found-settings");
      }
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
    if (process.env.PHASEWISE_TEST_SCENARIO === "steps") {
      await stepsSession(api, report, step, file);
      return;
    }
    if (process.env.PHASEWISE_TEST_SCENARIO === "commands") {
      await commandsSession(report, step, file, notices, clicker);
      return;
    }
    if (process.env.PHASEWISE_TEST_SCENARIO === "flows") {
      await flowsSession({ api, report, step, shoot, file, notices, clicker, prompter });
      return;
    }

    report.statusBefore = await api.commands.refreshStatus(file);
    report.statusBarBefore = api.statusBar.text;
    // A click on the status bar runs its item's command: the Status pick with the actions (dismissed).
    const offeredBefore = prompter.offered.length;
    await vscode.commands.executeCommand(api.statusBar.item.command as string);
    report.statusBarClick = { command: api.statusBar.item.command, offered: prompter.offered[offeredBefore] ?? [] };

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
    // The plan opens rendered: a Markdown preview tab, not its source.
    const planTabs = await waitFor(() => {
      const tabs = tabsView().filter((t) => t.label.includes("plan.md"));
      return tabs.some((t) => t.kind.startsWith("webview:")) ? tabs : undefined;
    }, 10_000);
    report.plan = {
      result: plan,
      document: planDoc
        ? { uri: planDoc.uri.toString(), languageId: planDoc.languageId, text: planDoc.getText() }
        : null,
      streamedChunks: planEntry?.chunks ?? 0,
      states: planEntry?.states ?? [],
      tabs: planTabs ?? tabsView(),
    };
    step("plan done");

    // Code from the palette without its key: preflight says so before asking anything.
    const askedBefore = prompter.asked.length;
    const noticesBefore = notices.length;
    const refused = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    report.preflight = {
      result: refused ?? null,
      asked: prompter.asked.slice(askedBefore),
      notices: notices.slice(noticesBefore),
    };
    step("preflight shown");

    // The same phase run anyway (an argument call asks nothing): the server's problem diagnostic.
    const failedCode = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code, {
      uri: file.toString(),
      instruction,
    });
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

    // Code, confirmed (phases.code.confirm is on by default): the change to both files opens as a
    // diff and waits. Discard (the diff title bar's button) changes nothing.
    const caller = vscode.Uri.joinPath(folder.uri, "orders.py");
    const callerBefore = fs.readFileSync(caller.fsPath, "utf-8");
    const isDiffTab = (t: { kind: string }) => t.kind.startsWith("diff:") || t.kind.startsWith("multidiff:");
    const diffTabs = () => tabsView().filter(isDiffTab);
    /** The diff tabs once a change's diff has opened (undefined if none opened in time). */
    const diffShown = () => waitFor(() => (diffTabs().length > 0 ? diffTabs() : undefined), 10_000);
    const noticesBeforeDiscard = notices.length;
    prompter.push(instruction);
    const discarding = vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    const first = await waitFor(() => api.review.pending);
    const firstTabs = await diffShown();
    await vscode.commands.executeCommand(CHANGE.discard);
    const discarded = await discarding;
    report.discard = {
      shown: first
        ? {
            label: first.label,
            question: first.question,
            files: first.files.map((f) => ({ path: f.path, created: f.created, changes: f.before !== f.after })),
            proposed: first.files.map((f) => f.after).join("\n"),
          }
        : null,
      tabs: firstTabs ?? tabsView(),
      result: discarded,
      pendingAfter: api.review.pending !== undefined,
      diffTabsAfter: diffTabs(),
      tabsAfter: vscode.window.tabGroups.all.map((g) => ({
        column: g.viewColumn,
        active: g.activeTab?.label,
        tabs: g.tabs.map((t) => t.label),
      })),
      visibleAfter: vscode.window.visibleTextEditors.map((e) => e.document.uri.toString()),
      activeAfter: vscode.window.activeTextEditor?.document.uri.toString() ?? null,
      documentUnchanged: doc.getText() === original,
      callerUnchanged:
        fs.readFileSync(caller.fsPath, "utf-8") === callerBefore &&
        !vscode.workspace.textDocuments.some((d) => d.uri.toString() === caller.toString() && d.isDirty),
      notices: notices.slice(noticesBeforeDiscard),
      problems: diagnosticsView(file).filter((d) => d.source === PROBLEM_SOURCE),
    };
    step("code discarded");

    // The same change again, applied (the title bar's ✓): both files change at once.
    prompter.push(instruction);
    const applying = vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    const second = await waitFor(() => (api.review.pending?.id !== first?.id ? api.review.pending : undefined));
    await vscode.commands.executeCommand(CHANGE.apply);
    const code = await applying;
    const changed = await waitFor(() => (doc.getText() !== original ? true : undefined), 10_000);
    // VS Code opens the caller in the background to apply the change (and, saved, may let it go)
    const callerDoc = vscode.workspace.textDocuments.find((d) => d.uri.toString() === caller.toString());
    const callerNow = () => callerDoc?.getText() ?? fs.readFileSync(caller.fsPath, "utf-8");
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
      shownFiles: second?.files.map((f) => f.path) ?? [],
      diffTabsAfter: diffTabs(),
      callerText: callerNow(),
      // a multi-file refactoring: VS Code saved both files (files.refactoring.autoSave)
      onDisk: await waitFor(() => {
        const texts = [fs.readFileSync(file.fsPath, "utf-8"), fs.readFileSync(caller.fsPath, "utf-8")];
        return texts.every((t) => t.includes("read_file")) ? texts : undefined;
      }, 10_000),
      dirtyAfter: vscode.workspace.textDocuments.filter((d) => d.isDirty).map((d) => d.uri.toString()),
      documentChanged: changed === true,
      problemCleared: cleared === true,
      text: doc.getText(),
    };
    step("code done");

    // A file edited while its change is shown (the user typed in it): Apply refuses all of it.
    prompter.push("Rename read_file to fetch_file");
    const racing = vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    const third = await waitFor(() => (api.review.pending?.id !== second?.id ? api.review.pending : undefined));
    const typed = new vscode.WorkspaceEdit();
    typed.insert(file, new vscode.Position(0, 0), "# typed while the diff was open\n");
    const typedApplied = await vscode.workspace.applyEdit(typed);
    await vscode.commands.executeCommand(CHANGE.apply);
    const raced = await racing;
    report.moved = {
      shown: third?.files.map((f) => f.path) ?? [],
      typedApplied,
      result: raced ?? null,
      text: doc.getText(),
      callerText: callerNow(),
      problems: await waitFor(() => {
        const found = diagnosticsView(file).filter((d) => d.source === PROBLEM_SOURCE);
        return found.length > 0 ? found : undefined;
      }, 10_000),
    };
    step("moved-on change refused");

    // A change that creates a file: shown against an empty side, created when applied.
    prompter.push("Add a test for read_file");
    const creating = vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    const fourth = await waitFor(() => (api.review.pending?.id !== third?.id ? api.review.pending : undefined));
    const createTabs = await diffShown();
    await vscode.commands.executeCommand(CHANGE.apply);
    const created = await creating;
    const newFile = fourth?.files.find((f) => f.created);
    report.created = {
      shown: fourth?.files.map((f) => ({ path: f.path, created: f.created })) ?? [],
      tabs: createTabs ?? [],
      result: created ?? null,
      // open in the background, or already saved and let go
      text: newFile
        ? (vscode.workspace.textDocuments.find((d) => d.uri.toString() === newFile.uri.toString())?.getText() ??
          (fs.existsSync(newFile.uri.fsPath) ? fs.readFileSync(newFile.uri.fsPath, "utf-8") : null))
        : null,
    };
    step("new file created");

    // The phase cancelled (its progress notification's Cancel) while its change is shown: the
    // diff goes, nothing lands, and a late Apply finds nothing to apply.
    const textBeforeCancel = doc.getText();
    prompter.push("Rename read_file to load_file");
    const cancelling = vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code);
    const fifth = await waitFor(() => (api.review.pending?.id !== fourth?.id ? api.review.pending : undefined));
    const codeRun = await waitFor(() => api.progress.running()[0], 10_000);
    const cancelledRuns = codeRun ? api.progress.cancel(codeRun) : 0;
    const cancelledCode = await cancelling;
    const pendingGone = await waitFor(() => (api.review.pending === undefined ? true : undefined), 10_000);
    const lateApply = await vscode.commands.executeCommand(CHANGE.apply);
    report.cancelledReview = {
      shown: fifth?.files.map((f) => f.path) ?? [],
      cancelled: cancelledRuns,
      result: cancelledCode ?? null,
      pendingGone: pendingGone === true,
      lateApply,
      diffTabs: (await waitFor(() => (diffTabs().length === 0 ? [] : undefined), 10_000)) ?? diffTabs(),
      unchanged: doc.getText() === textBeforeCancel && !callerNow().includes("load_file"),
    };
    step("code cancelled while shown");
    // Later changes (the run's code phase) are applied as soon as they are shown.
    api.review.onDidShow(() => void vscode.commands.executeCommand(CHANGE.apply));

    prompter.push("");
    const review = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.review);
    const findings = await waitFor(() => {
      const found = vscode.languages.getDiagnostics(file).filter((d) => d.source === REVIEW_SOURCE);
      return found.length > 0 ? found : undefined;
    }, 10_000);
    report.review = { result: review, findings: (findings ?? []).length };
    step("review done");

    // A rate limit with retry-after on the plan phase (the test's simulator fault on model
    // "limited-sim"): the notification counts down, the plan view says it is waiting.
    const historyBefore = api.progress.history().length;
    const limited = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan, {
      uri: file.toString(),
      instruction: "Plan again",
      model: "e2e-planner/limited-sim",
    });
    const limitedEntry = [...vscode.workspace.textDocuments]
      .filter((d) => d.uri.scheme === PLAN_SCHEME)
      .map((d) => api.documents.planEntry(d.uri))
      .find((e) => e !== undefined);
    report.rateLimit = {
      result: limited,
      progress: api.progress.history().slice(historyBefore),
      planStates: limitedEntry?.states ?? [],
      planTabs: tabsView().filter((t) => t.label.includes("plan.md")),
    };
    step("rate limit waited");

    // A cancel (what the notification's Cancel button does) of a plan stalled at the provider
    // (the fault on model "stalled-sim"): the answer says cancelled, and so does the editor.
    const cancelNotices = notices.length;
    const stalled = vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan, {
      uri: file.toString(),
      instruction: "Plan slowly",
      model: "e2e-planner/stalled-sim",
    });
    const runningToken = await waitFor(() => api.progress.running()[0], 10_000);
    const cancelledCount = runningToken ? api.progress.cancel(runningToken) : 0;
    const cancelled = await stalled;
    const cancelledEntry = [...vscode.workspace.textDocuments]
      .filter((d) => d.uri.scheme === PLAN_SCHEME)
      .map((d) => api.documents.planEntry(d.uri))
      .find((e) => e !== undefined);
    report.cancel = {
      token: runningToken ?? null,
      cancelled: cancelledCount,
      result: cancelled,
      notices: notices.slice(cancelNotices),
      planStates: cancelledEntry?.states ?? [],
      // the document re-reads its content after the change event: wait for the cancelled version
      planText: cancelledEntry
        ? await waitFor(async () => {
            const text = (await vscode.workspace.openTextDocument(cancelledEntry.uri)).getText();
            return text.includes("cancelled") ? text : undefined;
          }, 10_000)
        : null,
    };
    step("cancel done");

    // The Retry quick fix's command reuses the plan view: still one plan tab.
    const retried = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.retry, {
      uri: file.toString(),
      phase: "plan",
    });
    report.retry = {
      result: retried,
      planTabs: tabsView().filter((t) => t.label.includes("plan.md")),
    };
    step("retry done");

    // A server warning (stderr only): once, at warning level, in the output channel.
    await api.server.running?.sendNotification("phasewise/setKeys", { notKeys: true });
    report.serverWarning = await waitFor(
      () => api.log.entries().find((e) => e.message.includes("phasewise/setKeys without")),
      10_000,
    );
    step("server warning logged");

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
        tabs: await waitFor(() => {
          const tabs = tabsView().filter((t) => t.label.includes("Phasewise providers"));
          return tabs.some((t) => t.kind.startsWith("webview:")) ? tabs : undefined;
        }, 10_000),
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
    if (api.server.supports(COMMANDS.runPhase)) {
      // "Run Phase…": the phase picked from the server's phases, then the instruction
      prompter.push("plan", "Summarise the module");
      const ran = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.runPhase);
      report.runPhase = { ok: ran?.ok, phase: ran?.phase, provider: ran?.provider };
      step("run phase done");

      // A plan-kind phase of the user's own ("sketch", cut at its output limit by the test's
      // settings): its own plan view, which says the answer was cut, and a warning.
      const noticesBeforeSketch = notices.length;
      const sketch = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.runPhase, {
        phase: "sketch",
        uri: file.toString(),
        instruction: "Sketch the module",
      });
      const sketchDoc = await waitFor(() =>
        vscode.workspace.textDocuments.find(
          (d) => d.uri.scheme === PLAN_SCHEME && d.uri.path.endsWith("sketch.md") && /served by/.test(d.getText()),
        ),
      );
      const sketchTabs = await waitFor(() => {
        const tabs = tabsView().filter((t) => t.label.includes("sketch.md"));
        return tabs.some((t) => t.kind.startsWith("webview:")) ? tabs : undefined;
      }, 10_000);
      report.sketch = {
        result: sketch ?? null,
        text: sketchDoc?.getText() ?? null,
        tabs: sketchTabs ?? tabsView(),
        notices: notices.slice(noticesBeforeSketch),
      };
      step("sketch done");
    }

    report.statusAfter = await api.commands.refreshStatus(file);
    report.statusBarAfter = api.statusBar.text;
    report.diagnostics = diagnosticsView(file);
    report.asked = prompter.asked;
    report.notices = notices;
    await vscode.workspace.saveAll(false);
  } catch (err) {
    report.error = err instanceof Error ? `${err.message}\n${err.stack ?? ""}` : String(err);
  } finally {
    report.output = api.log.lines();
    report.outputEntries = api.log.entries();
    report.elapsedMs = Date.now() - started;
    report.finished = true;
    write();
  }
}

/**
 * No server anywhere (`PHASEWISE_TEST_SCENARIO=install`): the "not found" notification's Install is
 * clicked; the extension makes its own environment and installs the wheel its .vsix carries, with a
 * progress notification (screenshot install-server while pip works), then starts the server; a plan
 * then runs on it (screenshot install-server-done).
 */
async function installSession(ctx: {
  api: PhasewiseApi;
  report: Record<string, unknown>;
  step: (name: string) => void;
  shoot: (name: string) => Promise<void>;
  notices: Notice[];
  clicker: ClickerSlot;
  prompter: ScriptedPrompter;
}): Promise<void> {
  const { api, report, step, shoot, notices, clicker, prompter } = ctx;
  const installStarted = Date.now();
  clicker.click = (_message, actions) => (actions.includes("Install") ? "Install" : undefined);
  clicker.closeClicked = true;
  // activation shows the "not found" notification (its Install clicked here); when it came before this
  // session watched, it is closed and the status command shows it again
  const before = await api.server.ensureStarted();
  report.stateBefore = api.server.state;
  report.unavailable = api.server.unavailableMessage();
  if (before) {
    throw new Error(`a server was found before the install: ${JSON.stringify(api.server.launch)}`);
  }
  const clickedNow = () => notices.find((n) => n.clicked === "Install");
  if (!(await waitFor(() => clickedNow() ?? (api.server.state === "installing" ? true : undefined), 3_000))) {
    await vscode.commands.executeCommand("notifications.clearAll");
    await vscode.commands.executeCommand("phasewise.status");
  }
  const offered = await waitFor(clickedNow, 10_000);
  clicker.click = undefined;
  clicker.closeClicked = false;
  report.offered = offered ?? notices;
  if (!offered) {
    throw new Error("the not-found notification offered no Install");
  }
  step("install clicked");
  // while pip works: the progress notification (unless the install stops first)
  await waitFor(() => (api.server.state === "installing" ? true : undefined), 10_000);
  const pipStep = await waitFor(
    () =>
      api.managed.steps.find((s) => /^(Collecting|Processing|Downloading|Using cached)/.test(s)) ??
      (api.server.state === "installing" ? undefined : ""),
    120_000,
  );
  report.pipStepSeen = pipStep || null;
  if (pipStep) {
    await shoot("install-server"); // not when the install failed before pip (a test of that)
  }
  const settled = await waitFor(
    () => (["running", "not-found", "failed"].includes(api.server.state) ? api.server.state : undefined),
    400_000,
  );
  const running = settled === "running";
  report.installMs = Date.now() - installStarted;
  report.installSteps = [...api.managed.steps];
  report.serverState = api.server.state;
  report.serverVersion = api.server.serverVersion();
  report.launch = api.server.launch;
  report.environment = api.managed.dir;
  if (!running) {
    report.unavailable = api.server.unavailableMessage();
    report.notices = notices;
    return;
  }
  step("installed and running");
  const installed = await waitFor(() => notices.find((n) => n.message.endsWith("installed and running.")), 10_000);
  report.installedNotice = installed ?? null;

  const folder = vscode.workspace.workspaceFolders?.[0];
  if (!folder) {
    throw new Error("no workspace folder open");
  }
  const file = vscode.Uri.joinPath(folder.uri, "app.py");
  await vscode.window.showTextDocument(await vscode.workspace.openTextDocument(file));
  prompter.push("Rename load to read_file");
  const plan = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan);
  const planDoc = await waitFor(() =>
    vscode.workspace.textDocuments.find((d) => d.uri.scheme === PLAN_SCHEME && /served by|failed by/.test(d.getText())),
  );
  report.plan = { result: plan ?? null, document: planDoc?.getText() ?? null };
  step("plan done");
  await shoot("install-server-done");
  report.notices = notices;
}

/**
 * A server of another version than the extension (`PHASEWISE_TEST_SCENARIO=version`): the extension
 * says so when it starts; for its own environment it offers Update (clicked here), which reinstalls
 * the wheel the .vsix carries and restarts the server; a server the user chose it only tells about.
 */
async function versionSession(
  api: PhasewiseApi,
  report: Record<string, unknown>,
  step: (name: string) => void,
  notices: Notice[],
  clicker: ClickerSlot,
): Promise<void> {
  clicker.click = (_message, actions) => (actions.includes("Update") ? "Update" : undefined);
  clicker.closeClicked = true;
  const own = api.managed.version;
  const said = () => notices.find((n) => n.message.includes(`, the extension ${own}`));
  await api.server.ensureStarted();
  report.launchBefore = api.server.launch; // its version as probed (Update may be running already)
  // said at the server's start: when that came before this session watched, a restart says it again
  if (!(await waitFor(said, 5_000))) {
    await api.server.restart();
  }
  const notice = await waitFor(said, 10_000);
  report.versionNotice = notice ?? null;
  step("version said");
  if (notice?.clicked === "Update") {
    await waitFor(() => (api.server.state === "installing" ? true : undefined), 10_000);
    const updated = await waitFor(
      () => (api.server.state === "running" && api.server.serverVersion() === own ? true : undefined),
      300_000,
    );
    report.updated = updated ?? false;
    report.updateSteps = [...api.managed.steps];
    report.installedNotice =
      (await waitFor(() => notices.find((n) => n.message.endsWith("installed and running.")))) ?? null;
    step("updated");
  }
  clicker.click = undefined;
  report.serverState = api.server.state;
  report.serverVersion = api.server.serverVersion();
  report.launch = api.server.launch;
  report.notices = notices;
}

/**
 * Phases that work in steps (`PHASEWISE_TEST_SCENARIO=steps`; the workspace's plan and code phases
 * are agents): a plan lists its steps above the plan in its view while they happen, and the plan
 * handed on is the plan alone; a code phase that searches, reads and edits two files lists its
 * steps in a view of its own while they happen, then its one change waits in a diff, applied here.
 */
async function stepsSession(
  api: PhasewiseApi,
  report: Record<string, unknown>,
  step: (name: string) => void,
  file: vscode.Uri,
): Promise<void> {
  const instruction = "rename find_item to find_by_sku";
  const isView = (d: vscode.TextDocument, phase: string) =>
    d.uri.scheme === PLAN_SCHEME && d.uri.path.endsWith(` ${phase}.md`);
  // each view's text every time it changed, and whether its phase had answered by then
  const seen: { phase: string; text: string; answered: boolean }[] = [];
  let answered = false;
  // and what the extension's view held right after each step reached it (VS Code may redraw once
  // for several steps that come together)
  const atStep: { phase: string; step: number; text: string; answered: boolean }[] = [];
  const documents = api.documents;
  const onStep = documents.onStep.bind(documents);
  documents.onStep = (params) => {
    onStep(params);
    const uri = vscode.Uri.from({
      scheme: PLAN_SCHEME,
      path: `/inventory.py ${params.phase}.md`,
      query: `for=${encodeURIComponent(file.toString())}`,
    });
    atStep.push({
      phase: params.phase,
      step: params.step.step,
      text: documents.provideTextDocumentContent(uri),
      answered,
    });
  };
  const watching = vscode.workspace.onDidChangeTextDocument((e) => {
    for (const phase of ["plan", "code"]) {
      if (isView(e.document, phase)) {
        seen.push({ phase, text: e.document.getText(), answered });
      }
    }
  });
  try {
    const plan = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan, {
      uri: file.toString(),
      instruction,
    });
    answered = true;
    const planDoc = await waitFor(() =>
      vscode.workspace.textDocuments.find((d) => isView(d, "plan") && /served by|failed by/.test(d.getText())),
    );
    report.plan = {
      result: plan ?? null,
      text: planDoc?.getText() ?? null,
      handedOn: api.documents.latestPlan(file)?.text ?? null,
    };
    step("plan done");

    answered = false;
    const running = vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.code, {
      uri: file.toString(),
      instruction,
    });
    const pending = await waitFor(() => api.review.pending);
    // the view as the extension holds it while the change waits, and VS Code's copy once it caught up
    const codeView = vscode.Uri.from({
      scheme: PLAN_SCHEME,
      path: "/inventory.py code.md",
      query: `for=${encodeURIComponent(file.toString())}`,
    });
    const held = documents.provideTextDocumentContent(codeView);
    const rendered = await waitFor(() => {
      const text = vscode.workspace.textDocuments.find((d) => isView(d, "code"))?.getText();
      return text === held ? text : undefined;
    }, 10_000);
    report.asked = {
      question: pending?.question ?? null,
      files: pending?.files.map((f) => f.path) ?? [],
      view: held,
      rendered: rendered ?? null,
      tabs: tabsView(),
    };
    step("code asked");
    await vscode.commands.executeCommand(CHANGE.apply);
    const code = await running;
    answered = true;
    const codeDoc = await waitFor(() =>
      vscode.workspace.textDocuments.find((d) => isView(d, "code") && /served by|failed by/.test(d.getText())),
    );
    const caller = vscode.Uri.joinPath(file, "..", "orders.py");
    report.code = {
      result: code ?? null,
      text: codeDoc?.getText() ?? null,
      tabs: tabsView(),
      document: vscode.workspace.textDocuments.find((d) => d.uri.toString() === file.toString())?.getText() ?? null,
      caller: fs.readFileSync(caller.fsPath, "utf-8"),
    };
    step("code applied");
  } finally {
    watching.dispose();
    documents.onStep = onStep;
    report.seen = seen;
    report.atStep = atStep;
  }
}

/**
 * Named commands (`PHASEWISE_TEST_SCENARIO=commands`): the plan phase runs `mark` (from the user's
 * settings), `once` and `never` (from the workspace's `.vscode/settings.json`). The server asks
 * about the workspace's two with `window/showMessageRequest`, shown as notifications: the session
 * clicks "Allow once" on `once`'s and "Deny" on `never`'s (and on any other question, which the
 * test then finds among the notices).
 */
async function commandsSession(
  report: Record<string, unknown>,
  step: (name: string) => void,
  file: vscode.Uri,
  notices: Notice[],
  clicker: ClickerSlot,
): Promise<void> {
  clicker.click = (message, actions) =>
    actions.includes("Allow once") ? (message.includes("`touch once.txt`") ? "Allow once" : "Deny") : undefined;
  const before = notices.length;
  try {
    const plan = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan, {
      uri: file.toString(),
      instruction: "run `mark`, run `once` and run `never`",
    });
    report.plan = { result: plan ?? null };
    step("plan done");
  } finally {
    clicker.click = undefined;
    report.questions = notices.slice(before).filter((n) => n.clicked !== undefined);
  }
}

/** The plan-kind view of `phase` for `file`, as the extension names it. */
function viewUri(file: vscode.Uri, phase: string): vscode.Uri {
  const name = file.path.split("/").pop() ?? "";
  return vscode.Uri.from({
    scheme: PLAN_SCHEME,
    path: `/${name} ${phase}.md`,
    query: `for=${encodeURIComponent(file.toString())}`,
  });
}

/** Queues a fault at the test's simulator (`PHASEWISE_TEST_SIM_FAULTS`: its /_sim/faults). */
async function queueFault(rule: object): Promise<boolean> {
  const url = process.env.PHASEWISE_TEST_SIM_FAULTS;
  if (!url) {
    return false;
  }
  const answer = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(rule),
  });
  return answer.ok;
}

interface FlowsContext {
  api: PhasewiseApi;
  report: Record<string, unknown>;
  step: (name: string) => void;
  shoot: (name: string) => Promise<void>;
  file: vscode.Uri;
  notices: Notice[];
  clicker: ClickerSlot;
  prompter: ScriptedPrompter;
}

/**
 * Issue 23's VS Code flows (`PHASEWISE_TEST_SCENARIO=flows`; `retry.maxWaitSeconds` is 1, so a rate
 * limit's 6 s retry-after fails the phase at once): the quick fix that retries once the limit
 * lifts counts down; the failure's notification offers Retry, whose countdown is cancelled, and
 * Plan then offers the instruction again; a result with nothing sent says so; a run's plan view
 * while its code change waits; a phase of the user's own from Run Phase and Compare; settings
 * typed wrong; Verify's report.
 */
async function flowsSession(ctx: FlowsContext): Promise<void> {
  const { api, report, step, shoot, file, notices, clicker, prompter } = ctx;
  const uri = file.toString();
  const limited = "e2e-planner/limited-sim";
  const planView = viewUri(file, "plan");
  const viewText = (view: vscode.Uri) => api.documents.provideTextDocumentContent(view);
  const rendered = async (view: vscode.Uri, ok: (text: string) => boolean) =>
    waitFor(async () => {
      const text = (await vscode.workspace.openTextDocument(view)).getText();
      return ok(text) ? text : undefined;
    }, 10_000);
  await api.commands.refreshStatus(file);

  // 6: the rate limit's quick fix waits until the limit lifts, counting down as a phase does
  let noticesBefore = notices.length;
  const failed = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan, {
    uri,
    instruction: "Plan the rename",
    model: limited,
  });
  const limitProblem = await waitFor(() =>
    vscode.languages.getDiagnostics(file).find((d) => d.source === PROBLEM_SOURCE && d.code === "rate-limit"),
  );
  const actions = limitProblem
    ? await vscode.commands.executeCommand<vscode.CodeAction[]>(
        "vscode.executeCodeActionProvider",
        file,
        limitProblem.range,
      )
    : [];
  const fix = actions.find((a) => a.title.includes("once the limit lifts"));
  let historyBefore = api.progress.history().length;
  const waits = () =>
    api.progress
      .history()
      .slice(historyBefore)
      .filter((s) => s.state === "waiting");
  const retrying = fix?.command
    ? vscode.commands.executeCommand<PhaseResult | undefined>(
        fix.command.command,
        ...((fix.command.arguments ?? []) as unknown[]),
      )
    : Promise.resolve(undefined);
  await waitFor(() => (waits().length >= 2 ? true : undefined), 15_000);
  const viewWhileWaiting = viewText(planView);
  // the screenshot once VS Code has the waiting view and a later step of the countdown (the preview drawn)
  await rendered(planView, (t) => t.includes("waiting for the rate limit to lift"));
  await waitFor(() => (waits().length >= 3 ? true : undefined), 15_000);
  await shoot("retry-countdown");
  const retried = await retrying;
  report.retryFix = {
    failed: failed ?? null,
    failureNotices: notices.slice(noticesBefore),
    fixes: actions.map((a) => a.title),
    fix: fix?.title ?? null,
    progress: api.progress.history().slice(historyBefore),
    viewWhileWaiting,
    planStates: api.documents.planEntry(planView)?.states ?? [],
    result: retried ?? null,
    view: await rendered(planView, (t) => /served by/.test(t)),
  };
  step("retry fix done");

  // 10: the failure's notification offers Retry; the countdown cancelled, Plan offers the instruction again
  const queued = await queueFault({
    provider: "e2e-planner",
    model: "limited-sim",
    fault: { preset: "anthropic.rate_limit_error", retry_after: 8 },
  });
  noticesBefore = notices.length;
  clicker.click = (_message, actions) => (actions.includes("Retry") ? "Retry" : undefined);
  historyBefore = api.progress.history().length;
  const failedAgain = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan, {
    uri,
    instruction: "Plan the rename once more",
    model: limited,
  });
  clicker.click = undefined;
  const waiting = await waitFor(() => waits()[0], 15_000);
  const cancelled = waiting ? api.progress.cancel(waiting.token) : 0;
  const cancelNotice = await waitFor(
    () => notices.slice(noticesBefore).find((n) => n.message.startsWith("Phasewise plan cancelled")),
    15_000,
  );
  // nothing sent (the limit still holds): the view says so, not "0.0 s, 0 → 0 tokens"
  const unsent = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.plan, {
    uri,
    instruction: "Plan while the limit holds",
    model: limited,
  });
  const unsentView = await rendered(planView, (t) => t.startsWith("# Plan: Plan while") && /failed by/.test(t));
  const inputsBefore = prompter.inputs.length;
  prompter.push(undefined); // Plan from the palette: what it offers, then dismissed
  await vscode.commands.executeCommand(COMMANDS.plan);
  const offeredBefore = prompter.offered.length;
  prompter.push(undefined); // Retry Phase from the palette: the phases it offers, then dismissed
  await vscode.commands.executeCommand(COMMANDS.retry);
  report.retryNotice = {
    queued,
    failed: failedAgain ?? null,
    notices: notices.slice(noticesBefore),
    waiting: waiting ?? null,
    cancelled,
    cancelNotice: cancelNotice ?? null,
    planAsked: prompter.inputs.slice(inputsBefore),
    retryOffered: prompter.offered[offeredBefore] ?? [],
    unsent: unsent ?? null,
    unsentView: unsentView ?? viewText(planView),
  };
  step("retry notice done");

  // 7: a run: while its code change waits for Apply the plan's view is done, and holds the plan only
  await vscode.commands.executeCommand("notifications.clearAll"); // the failures above, out of the pictures
  const runView: Record<string, unknown> = {};
  const shown = api.review.onDidShow(() => {
    void (async () => {
      runView.held = viewText(planView);
      runView.rendered = await rendered(planView, (t) => t === runView.held);
      runView.tabs = tabsView();
      await shoot("run-change-pending");
      await vscode.commands.executeCommand(CHANGE.apply);
    })();
  });
  prompter.push("Rename load to read_file");
  const ran = await vscode.commands.executeCommand<unknown>(COMMANDS.run);
  shown.dispose();
  const runResults = phaseResultsIn(ran);
  report.run = {
    ...runView,
    results: runResults.map((r) => ({ phase: r.phase, ok: r.ok, text: r.text })),
    after: await rendered(planView, (t) => t.startsWith("# Plan: Rename load") && /served by/.test(t)),
  };
  step("run done");

  // 8: Run Phase with a phase of the user's own: its name and route in the prompt; Compare offers it
  await api.commands.refreshStatus(file);
  const inputsBeforeOwn = prompter.inputs.length;
  const offeredBeforeOwn = prompter.offered.length;
  prompter.push("security", "");
  const own = await vscode.commands.executeCommand<PhaseResult | undefined>(COMMANDS.runPhase);
  const ownFindings = await waitFor(() => {
    const found = vscode.languages.getDiagnostics(file).filter((d) => d.source !== PROBLEM_SOURCE);
    return found.length > 0 ? found : undefined;
  }, 10_000);
  prompter.push(undefined);
  await vscode.commands.executeCommand(COMMANDS.compare);
  report.ownPhase = {
    picked: prompter.offered[offeredBeforeOwn] ?? [],
    asked: prompter.inputs.slice(inputsBeforeOwn),
    result: own ?? null,
    diagnostics: (ownFindings ?? []).map((d) => ({ source: d.source, message: d.message })),
    compareOffered: prompter.offered[offeredBeforeOwn + 1] ?? [],
  };
  step("own phase done");

  // 11: settings typed wrong, one in-between value after another: no toast; the code item says its problem
  noticesBefore = notices.length;
  const config = vscode.workspace.getConfiguration("phasewise");
  const phases = config.inspect<Record<string, unknown>>("phases")?.workspaceValue ?? {};
  const code = (phases.code ?? {}) as Record<string, unknown>;
  for (const model of ["e", "e2", "e2e-coder/"]) {
    await config.update("phases", { ...phases, code: { ...code, model } }, vscode.ConfigurationTarget.Workspace);
  }
  const painted = await waitFor(async () => {
    const status = await api.commands.refreshStatus(file);
    const item = api.statusBar.phases.find((p) => p.phase === "code");
    return status && item?.painted ? api.statusBar.phases : undefined;
  }, 15_000);
  const settingsFile = vscode.Uri.joinPath(file, "..", ".vscode", "settings.json");
  await waitFor(() => (vscode.languages.getDiagnostics(settingsFile).length > 0 ? true : undefined), 10_000);
  await vscode.commands.executeCommand("notifications.clearAll");
  await vscode.window.showTextDocument(settingsFile, { preview: true });
  await shoot("settings-problem");
  report.settings = {
    settingsText: (await vscode.workspace.openTextDocument(settingsFile)).getText(),
    items: painted ?? api.statusBar.phases,
    notices: notices.slice(noticesBefore),
    diagnostics: vscode.languages.getDiagnostics(settingsFile).map((d) => ({
      source: d.source,
      message: d.message,
      line: d.range.start.line,
    })),
    output: api.log.lines().filter((l) => l.includes("Phasewise settings: ")),
  };
  await config.update("phases", phases, vscode.ConfigurationTarget.Workspace);
  await vscode.window.showTextDocument(file);
  report.settings = {
    ...(report.settings as object),
    restored: await waitFor(async () => {
      await api.commands.refreshStatus(file);
      return api.statusBar.phases.every((p) => !p.painted) ? api.statusBar.phases : undefined;
    }, 15_000),
    clearedDiagnostics:
      (await waitFor(() => {
        const left = vscode.languages.getDiagnostics(settingsFile).map((d) => d.message);
        return left.some((m) => m.startsWith("phasewise.")) ? undefined : left;
      }, 10_000)) ?? vscode.languages.getDiagnostics(settingsFile).map((d) => d.message),
  };
  step("settings done");

  // 14: Verify's report fits half a screen
  await vscode.commands.executeCommand(COMMANDS.verify);
  report.verify = await waitFor(
    () =>
      vscode.workspace.textDocuments
        .find((d) => d.uri.scheme === REPORT_SCHEME && d.uri.path.startsWith("/Phasewise providers"))
        ?.getText(),
    10_000,
  );
  await shoot("verify-report");
  step("verify done");
}
