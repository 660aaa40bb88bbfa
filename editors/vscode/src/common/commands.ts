/**
 * The palette commands. Each acts on the active editor (its selection when there is one), asks
 * what it needs through the Prompter, sends the contract's command to the server and shows the
 * answer. Called with an argument object (from a quick fix or another extension) they ask nothing.
 */

import * as vscode from "vscode";

import type { ChangeReview } from "./changeReview";
import { PHASES, PROBLEM_SOURCE, REPO_INSTALL_COMMAND, SECTION, SERVER_SETTINGS, type Phase } from "./constants";
import { describeResult, type PhasewiseDocuments } from "./documents";
import { isEnvName, type KeyStore } from "./keys";
import type { Log } from "./log";
import {
  isPhaseResult,
  isStatusReport,
  isVerifyReport,
  keyReady,
  phaseResultsIn,
  routeOf,
  type PhaseResult,
  type Problem,
  type StatusReport,
} from "./protocol";
import { ServerUnavailable, type ServerManager } from "./server";
import type { SettingsProblems } from "./settingsProblems";
import { statusMarkdown, type StatusBar } from "./statusBar";
import type { Ui } from "./ui";

/** The actions' names, as the palette shows them (package.json titles), used in every message. */
export const ACTIONS = {
  retry: "Retry",
  setApiKey: "Set API Key…",
  openSettings: "Open Settings",
  showOutput: "Show Output",
  verify: "Verify Providers",
  restartServer: "Restart Server",
  install: "Install",
} as const;

/** Notifications and the Problems panel show Markdown literally: no backticks there. */
/** The label the server gives a code phase's change (its applyEdit and change annotation). */
function changeLabel(result: PhaseResult): string {
  return `Phasewise ${result.phase} (${routeOf(result)})`;
}

export function plainText(message: string): string {
  return message.replace(/`([^`]*)`/g, "$1");
}

export const COMMANDS = {
  plan: "phasewise.plan",
  code: "phasewise.code",
  review: "phasewise.review",
  run: "phasewise.run",
  status: "phasewise.status",
  verify: "phasewise.verify",
  compare: "phasewise.compare",
  retry: "phasewise.retry",
  runPhase: "phasewise.phase",
  setApiKey: "phasewise.setApiKey",
  openSettings: "phasewise.openSettings",
  restartServer: "phasewise.restartServer",
  installServer: "phasewise.installServer",
  showOutput: "phasewise.showOutput",
} as const;

interface LspRange {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

export interface PhaseArg {
  uri?: string;
  range?: LspRange;
  instruction?: string;
  plan?: string;
  model?: string;
}

interface Target {
  uri: vscode.Uri;
  range?: LspRange;
}

/** Problem kinds whose retry cannot help until the user acts (a key, settings, the account). */
const NOT_RETRIED = new Set(["billing", "config", "missing-credentials", "auth", "cancelled"]);

/** The documents a phase works on (the language client's selector): not plans, reports, output,
 * settings, or the proposed side of a change's diff. */
const WORK_SCHEMES = new Set(["file", "untitled"]);

function selectionRange(editor: vscode.TextEditor): LspRange | undefined {
  const selection = editor.selection;
  if (selection.isEmpty) {
    return undefined;
  }
  let end = selection.end;
  // A selection of whole lines ends at column 0 of the next line: that line is not part of it.
  if (end.character === 0 && end.line > selection.start.line) {
    end = editor.document.lineAt(end.line - 1).range.end;
  }
  return {
    start: { line: selection.start.line, character: selection.start.character },
    end: { line: end.line, character: end.character },
  };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class Commands {
  private lastStatus: StatusReport | undefined;
  /** The file last worked on: a plan preview beside it may have the focus. */
  private lastFile: vscode.Uri | undefined;
  /** The last instruction given for each document and phase (or run), offered again when asked. */
  private readonly instructions = new Map<string, string>();

  constructor(
    private readonly server: ServerManager,
    private readonly docs: PhasewiseDocuments,
    private readonly keys: KeyStore,
    private readonly log: Log,
    private readonly ui: Ui,
    private readonly statusBar: StatusBar,
    private readonly review: ChangeReview,
    private readonly settingsProblems: SettingsProblems,
  ) {}

  register(): vscode.Disposable[] {
    const reg = (id: string, fn: (arg?: never) => unknown) => vscode.commands.registerCommand(id, fn);
    return [
      reg(COMMANDS.plan, (arg?: PhaseArg) => this.phase("plan", arg)),
      reg(COMMANDS.code, (arg?: PhaseArg) => this.phase("code", arg)),
      reg(COMMANDS.review, (arg?: PhaseArg) => this.phase("review", arg)),
      reg(COMMANDS.run, (arg?: PhaseArg) => this.run(arg)),
      reg(COMMANDS.runPhase, (arg?: PhaseArg & { phase?: string }) => this.runPhase(arg)),
      reg(COMMANDS.status, (arg?: { uri?: string; quiet?: boolean }) => this.status(arg)),
      reg(COMMANDS.verify, (arg?: { uri?: string; providers?: string[] }) => this.verify(arg)),
      reg(COMMANDS.compare, (arg?: PhaseArg & { phase?: string; models?: string[] }) => this.compare(arg)),
      reg(COMMANDS.retry, (arg?: { uri?: string; phase?: string; model?: string }) => this.retry(arg)),
      reg(COMMANDS.setApiKey, (arg?: { env?: string; provider?: string }) => this.setApiKey(arg)),
      reg(COMMANDS.openSettings, (arg?: { setting?: string }) => this.openSettings(arg)),
      reg(COMMANDS.restartServer, () => this.restartServer()),
      reg(COMMANDS.installServer, () => this.installServer()),
      reg(COMMANDS.showOutput, () => this.log.show()),
      vscode.window.onDidChangeActiveTextEditor((editor) => {
        if (editor && WORK_SCHEMES.has(editor.document.uri.scheme)) {
          this.lastFile = editor.document.uri;
        }
      }),
    ];
  }

  // phases ----------------------------------------------------------------------------------------

  async phase(phase: Phase, arg?: PhaseArg): Promise<PhaseResult | undefined> {
    const target = this.target(arg);
    if (!target || !(await this.ready())) {
      return undefined;
    }
    let instruction = arg?.instruction;
    let plan = arg?.plan;
    if (instruction === undefined && (await this.preflightFails([phase], target))) {
      return undefined;
    }
    if (instruction === undefined) {
      const latest = phase === "code" ? this.docs.latestPlan(target.uri) : undefined;
      instruction = await this.askInstruction(phase, phase, target, latest?.instruction);
      if (instruction === undefined) {
        return undefined;
      }
      if (latest && instruction === latest.instruction) {
        plan = latest.text;
        this.log.info(`code: following the plan of run ${latest.runId}`);
      }
    }
    this.remember(target, phase, instruction);
    const args = { uri: target.uri.toString(), instruction, range: target.range, plan, model: arg?.model };
    const planDoc =
      phase === "plan" ? await this.docs.beginPlan(target.uri, instruction, this.routeHint(phase)) : undefined;
    return this.sendPhase(`phasewise.${phase}`, args, target, planDoc);
  }

  async run(arg?: PhaseArg): Promise<unknown> {
    const target = this.target(arg);
    if (!target || !(await this.ready())) {
      return undefined;
    }
    if (arg?.instruction === undefined && (await this.preflightFails([...PHASES], target))) {
      return undefined;
    }
    const instruction = arg?.instruction ?? (await this.askInstruction("run", "run", target));
    if (instruction === undefined) {
      return undefined;
    }
    this.remember(target, "run", instruction);
    const planDoc = await this.docs.beginPlan(target.uri, instruction, this.routeHint("plan"));
    const answer = await this.send(COMMANDS.run, { uri: target.uri.toString(), instruction, range: target.range });
    const results = phaseResultsIn(answer);
    this.docs.finishPlan(
      planDoc,
      results.find((r) => r.phase === "plan"),
      "the run did not reach the plan phase",
    );
    results.forEach((r) => this.present(r, { quiet: true }));
    const failed = results.find((r) => !r.ok);
    if (failed) {
      this.present(failed, { uri: target.uri });
    } else if (results.length > 0) {
      this.log.info(`run finished: ${results.map((r) => `${r.phase} ${routeOf(r)}`).join(", ")}`);
      vscode.window.setStatusBarMessage(`Phasewise run: ${results.map((r) => `${r.phase} ✓`).join(" ")}`, 5000);
    }
    void this.refreshStatus(target.uri);
    return answer;
  }

  /**
   * Any phase by name, the user's own included: picked from the server's phases (with their kind
   * and route), then the instruction; the server's `phasewise.phase` runs it. A code action's
   * command comes here with its phase and instruction, and is sent as it is.
   */
  async runPhase(arg?: PhaseArg & { phase?: string }): Promise<PhaseResult | undefined> {
    const target = this.target(arg);
    if (!target || !(await this.ready())) {
      return undefined;
    }
    let phase = arg?.phase;
    const report = await this.fetchStatus(target.uri.toString(), false);
    if (!phase) {
      const items = (report?.phases ?? []).map((p) => ({
        label: p.phase,
        description: `${p.kind ?? p.phase} phase · ${routeOf(p)}`,
        detail: p.problem?.message,
      }));
      const picked = await this.ui.prompter.pick(items, {
        title: "Phasewise: Run Phase…",
        placeHolder: "the phase to run: plan, code, review or one of yours",
      });
      if (!picked) {
        return undefined;
      }
      phase = picked.label;
    }
    const own = report?.phases?.find((p) => p.phase === phase);
    const named = own?.kind ?? phase;
    const kind = ((PHASES as readonly string[]).includes(named) ? named : "plan") as Phase;
    // the prompt names the phase chosen and its route (`security`, not the review it is a kind of)
    const instruction = arg?.instruction ?? (await this.askInstruction(phase, kind, target));
    if (instruction === undefined) {
      return undefined;
    }
    this.remember(target, phase, instruction);
    const args = { phase, uri: target.uri.toString(), instruction, range: target.range };
    // a plan-kind phase (plan, or one of the user's own) streams into its own plan view
    const planDoc =
      kind === "plan"
        ? await this.docs.beginPlan(target.uri, instruction, own ? routeOf(own) : this.routeHint("plan"), phase)
        : undefined;
    return this.sendPhase(COMMANDS.runPhase, args, target, planDoc);
  }

  /**
   * Sends one phase's command and shows its answer: the plan view begun for it (a plan-kind
   * phase) is finished, the result presented, the status refreshed.
   */
  private async sendPhase(
    command: string,
    args: object,
    target: Target,
    planDoc: vscode.Uri | undefined,
  ): Promise<PhaseResult | undefined> {
    const answer = await this.send(command, args);
    const result = isPhaseResult(answer) ? answer : undefined;
    if (planDoc) {
      this.docs.finishPlan(planDoc, result, answer === undefined ? "the server did not answer" : undefined);
    }
    if (result) {
      this.present(result, { uri: target.uri });
    }
    void this.refreshStatus(target.uri);
    return result;
  }

  /**
   * Reruns a phase's last command on a document (the server's `phasewise.retry`; after a rate
   * limit it waits until the limit lifts, counting down). From the palette: the active file, and
   * the phase picked, those with a problem shown on it first.
   */
  async retry(arg?: { uri?: string; phase?: string; model?: string }): Promise<PhaseResult | undefined> {
    const target = this.target(arg);
    if (!target || !(await this.ready())) {
      return undefined;
    }
    const uri = target.uri.toString();
    let phase = arg?.phase;
    if (!phase) {
      const failed = vscode.languages
        .getDiagnostics(target.uri)
        .filter((d) => d.source === PROBLEM_SOURCE)
        .map((d) => /^([\w-]+): /.exec(d.message)?.[1])
        .filter((p): p is string => p !== undefined);
      const report = this.lastStatus ?? (await this.fetchStatus(uri, false));
      const names = [...new Set([...failed, ...(report?.phases ?? []).map((p) => p.phase)])];
      const picked = await this.ui.prompter.pick(
        names.map((name) => ({
          label: name,
          description: `${this.routeHint(name)}${failed.includes(name) ? " · failed here" : ""}`,
        })),
        { title: "Phasewise: Retry Phase…", placeHolder: "the phase to run again on this file, as it last ran" },
      );
      if (!picked) {
        return undefined;
      }
      phase = picked.label;
    }
    const kind = this.lastStatus?.phases.find((p) => p.phase === phase)?.kind ?? phase;
    const planDoc =
      kind === "plan"
        ? await this.docs.beginPlan(target.uri, undefined, arg?.model ?? this.routeHint(phase), phase)
        : undefined;
    const answer = await this.send(COMMANDS.retry, { uri, phase, ...(arg?.model ? { model: arg.model } : {}) });
    const result = isPhaseResult(answer) ? answer : undefined;
    if (planDoc) {
      this.docs.finishPlan(planDoc, result, answer === undefined ? "the server did not answer" : undefined);
    }
    if (result) {
      this.present(result, { uri: target.uri });
    }
    return result;
  }

  // status, verify, compare -------------------------------------------------------------------

  async status(arg?: { uri?: string; quiet?: boolean }): Promise<StatusReport | undefined> {
    const uri = arg?.uri ?? this.activeUri()?.toString();
    const report = await this.fetchStatus(uri, !arg?.quiet);
    if (!report || arg?.quiet) {
      return report;
    }
    this.log.info(`status:\n${statusMarkdown(report)}`);
    type Item = vscode.QuickPickItem & { act?: () => unknown };
    const items: Item[] = report.phases.map((p) => {
      const missing = (p.keys ?? []).find((k) => !k.present);
      return {
        label: `${p.problem ? "$(error)" : keyReady(p) ? "$(pass)" : "$(key)"} ${p.phase}`,
        description: `${routeOf(p)}${p.protocol ? ` · ${p.protocol}` : ""}`,
        detail: p.problem
          ? p.problem.message
          : (p.keys ?? [])
              .map((k) => `${k.env}: ${k.present ? `${k.masked ?? "set"} (${k.source ?? "?"})` : "missing"}`)
              .join(", ") || (p.requiresKey === false ? "no key needed" : undefined),
        act: missing
          ? () => this.setApiKey({ env: missing.env, provider: p.provider })
          : () => this.openSettings({ setting: `${SECTION}.phases` }),
      };
    });
    for (const issue of report.settingsIssues ?? []) {
      items.push({
        label: `$(warning) ${issue.path}`,
        detail: issue.message,
        act: () => this.openSettings({ setting: issue.path }),
      });
    }
    items.push(
      { label: "", kind: vscode.QuickPickItemKind.Separator },
      { label: `$(key) ${ACTIONS.setApiKey}`, act: () => this.setApiKey() },
      { label: `$(gear) ${ACTIONS.openSettings}`, act: () => this.openSettings() },
      { label: `$(check-all) ${ACTIONS.verify}`, act: () => this.verify() },
      { label: `$(debug-restart) ${ACTIONS.restartServer}`, act: () => this.restartServer() },
      { label: `$(output) ${ACTIONS.showOutput}`, act: () => this.log.show() },
    );
    const picked = await this.ui.prompter.pick(items, {
      title: `Phasewise ${report.version ?? ""} — routes of ${uri ? vscode.Uri.parse(uri).path.split("/").pop() : "this workspace"}`,
      placeHolder: "Pick a phase to fix its key or settings, or an action",
    });
    await picked?.act?.();
    return report;
  }

  async verify(arg?: { uri?: string; providers?: string[] }): Promise<unknown> {
    const uri = arg?.uri ?? this.activeUri()?.toString();
    const answer = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "Phasewise: verifying providers…" },
      () => this.send(COMMANDS.verify, { uri, providers: arg?.providers }),
    );
    if (answer !== undefined) {
      this.log.info(`verify: ${JSON.stringify(answer)}`);
      await this.docs.showReport("Phasewise providers", this.verifyMarkdown(answer));
    }
    return answer;
  }

  async compare(arg?: PhaseArg & { phase?: string; models?: string[] }): Promise<unknown> {
    const target = this.target(arg);
    if (!target || !(await this.ready())) {
      return undefined;
    }
    // every phase the server has, the user's own included
    const report = arg?.phase ? this.lastStatus : await this.fetchStatus(target.uri.toString(), false);
    const names = report?.phases.map((p) => p.phase) ?? [...PHASES];
    const phaseItems = names.map((p) => ({
      label: p,
      description: `${this.kindOf(p) === p ? "" : `${this.kindOf(p)} phase · `}${this.routeHint(p)}`,
      phase: p,
    }));
    const phase =
      arg?.phase ??
      (await this.ui.prompter.pick(phaseItems, { title: "Phasewise: compare models — which phase?" }))?.phase;
    if (!phase) {
      return undefined;
    }
    let models = arg?.models;
    if (!models) {
      const text = await this.ui.prompter.input({
        title: `Phasewise: compare models on the ${phase} phase`,
        prompt: "Models to compare, separated by commas (provider/model)",
        value: this.lastStatus?.phases.find((p) => p.phase === phase)?.model ? `${this.routeHint(phase)}, ` : "",
        ignoreFocusOut: true,
        validateInput: (v) => {
          const refs = v
            .split(",")
            .map((s) => s.trim())
            .filter(Boolean);
          if (refs.length < 2) {
            return "Name at least two models";
          }
          const bad = refs.find((r) => !/^[^/\s]+\/\S+/.test(r));
          return bad ? `'${bad}' is not provider/model` : undefined;
        },
      });
      if (text === undefined) {
        return undefined;
      }
      models = text
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    }
    const instruction = arg?.instruction ?? (await this.askInstruction(phase, this.kindOf(phase), target));
    if (instruction === undefined) {
      return undefined;
    }
    const answer = await this.send(COMMANDS.compare, {
      uri: target.uri.toString(),
      range: target.range,
      instruction,
      phase,
      models,
    });
    const results = phaseResultsIn(answer);
    results.forEach((r) => this.present(r, { quiet: true }));
    const serverMarkdown = (answer as { markdown?: unknown } | undefined)?.markdown;
    if (typeof serverMarkdown === "string") {
      await this.docs.showReport(`Phasewise compare ${phase}`, serverMarkdown);
    } else if (answer !== undefined) {
      const sections = results.map(
        (r) =>
          `## ${routeOf(r)} — ${r.ok ? "ok" : `failed (${r.error?.kind ?? "?"})`}\n\n_${describeResult(r)}_\n\n${r.ok ? r.text : (r.error?.message ?? "")}`,
      );
      const body = sections.length
        ? sections.join("\n\n---\n\n")
        : "```json\n" + JSON.stringify(answer, null, 2) + "\n```";
      await this.docs.showReport(`Phasewise compare ${phase}`, `# Compare: ${instruction}\n\n${body}\n`);
    }
    return answer;
  }

  // keys, settings, server ----------------------------------------------------------------------

  async setApiKey(arg?: { env?: string; provider?: string }): Promise<boolean> {
    let env = arg?.env;
    let provider = arg?.provider ?? undefined;
    if (!env) {
      const report = this.lastStatus ?? (await this.fetchStatus(this.activeUri()?.toString(), false));
      const seen = new Map<string, { present: boolean; provider?: string }>();
      for (const p of report?.phases ?? []) {
        for (const k of p.keys ?? []) {
          if (!seen.has(k.env)) {
            seen.set(k.env, { present: k.present, provider: p.provider });
          }
        }
      }
      for (const name of this.keys.names()) {
        if (!seen.has(name)) {
          seen.set(name, { present: true });
        }
      }
      const other = "$(edit) Another variable…";
      const items = [...seen].map(([name, v]) => ({
        label: name,
        description: `${v.present ? "set" : "missing"}${v.provider ? ` · ${v.provider}` : ""}`,
        provider: v.provider,
      }));
      const picked = await this.ui.prompter.pick([...items, { label: other, description: "", provider: undefined }], {
        title: "Phasewise: which key?",
      });
      if (!picked) {
        return false;
      }
      if (picked.label === other) {
        env = await this.ui.prompter.input({
          title: "Phasewise: key variable",
          prompt: "The environment variable name the settings use (apiKeyEnv), e.g. ZAI_API_KEY",
          validateInput: (v) => (isEnvName(v.trim()) ? undefined : "Letters, digits and _ only"),
        });
        env = env?.trim();
      } else {
        env = picked.label;
        provider = picked.provider;
      }
      if (!env) {
        return false;
      }
    }
    if (!isEnvName(env)) {
      void this.ui.notify("error", `Phasewise: '${env}' is not an environment variable name.`);
      return false;
    }
    const value = await this.ui.prompter.input({
      title: `Phasewise: set ${env}${provider ? ` (${provider})` : ""}`,
      prompt:
        "Kept in VS Code's secret storage and given to the language server in memory only, never written to settings. Leave empty to remove it.",
      password: true,
      ignoreFocusOut: true,
    });
    if (value === undefined) {
      return false;
    }
    if (value.trim() === "") {
      await this.keys.remove(env);
      this.log.info(`${env} removed from secret storage`);
    } else {
      await this.keys.set(env, value.trim());
      this.log.info(`${env} stored in secret storage`);
    }
    await this.server.pushKeys({ [env]: value.trim() });
    void this.refreshStatus();
    return true;
  }

  async openSettings(arg?: { setting?: string }): Promise<void> {
    const query = (arg?.setting ?? SECTION).split(".").slice(0, 2).join(".");
    if (query === SERVER_SETTINGS && vscode.env.remoteName) {
      // machine-scoped: in a remote window (code-server, SSH, WSL) the User tab does not list them
      try {
        await vscode.commands.executeCommand("workbench.action.openRemoteSettings", { query });
        return;
      } catch {
        // no remote settings editor: the usual one
      }
    }
    await vscode.commands.executeCommand("workbench.action.openSettings", query);
  }

  /** The palette's Install or Update: only the extension's own environment, and only when it would be used. */
  async installServer(): Promise<void> {
    const launch = this.server.running ? this.server.launch : undefined;
    if (launch && !launch.managed) {
      void this.ui.notify(
        "info",
        `Phasewise: the language server in use (${this.server.serverVersion() ?? "unknown version"}) comes from ` +
          `${launch.origin}; the extension's own environment is used only when the settings, the workspace's .venv ` +
          "and PATH have none.",
      );
      return;
    }
    if (await this.server.installServer()) {
      void this.refreshStatus();
    }
  }

  async restartServer(): Promise<void> {
    this.log.info("restarting the language server");
    const client = await this.server.restart();
    if (client) {
      void vscode.window.setStatusBarMessage("Phasewise: language server restarted", 3000);
      void this.refreshStatus();
    } else {
      this.showUnavailable(this.server.unavailableMessage());
    }
  }

  /** Refreshes the status bar from `phasewise.status` (quietly: failures only reach the log). */
  async refreshStatus(uri?: vscode.Uri): Promise<StatusReport | undefined> {
    if (!this.server.running) {
      this.statusBar.showState(this.server.state, this.server.lastError);
      return undefined;
    }
    return this.fetchStatus((uri ?? this.activeUri())?.toString(), false);
  }

  // helpers -------------------------------------------------------------------------------------

  /** Starts the server if needed; says why not (and what to do) when it cannot run. */
  private async ready(): Promise<boolean> {
    if (await this.server.ensureStarted()) {
      return true;
    }
    this.showUnavailable(this.server.unavailableMessage());
    return false;
  }

  private async fetchStatus(uri: string | undefined, loud: boolean): Promise<StatusReport | undefined> {
    try {
      const answer = await this.server.execute(COMMANDS.status, uri ? { uri } : {});
      if (isStatusReport(answer)) {
        this.lastStatus = answer;
        this.statusBar.showReport(answer);
        void this.settingsProblems.show(answer);
        return answer;
      }
    } catch (err) {
      this.statusBar.showState(this.server.state, this.server.lastError);
      if (loud) {
        this.fail(err);
      } else {
        this.log.warn(`status: ${errorText(err)}`);
      }
    }
    return undefined;
  }

  /** Sends a server command; failures are shown and answered with undefined. */
  private async send(command: string, arg: object): Promise<unknown> {
    try {
      return await this.server.execute(command, arg);
    } catch (err) {
      this.fail(err);
      return undefined;
    }
  }

  private present(result: PhaseResult, options: { quiet?: boolean; uri?: vscode.Uri } = {}): void {
    this.docs.finishSteps(result); // a phase that worked in steps: its view says how it ended
    const line = describeResult(result);
    // the server may add a caveat to the label ("… — the checks fail"): the change is still this phase's
    const pendingLabel = this.review.pending?.label;
    if (!result.ok && result.error?.kind === "cancelled" && pendingLabel?.startsWith(changeLabel(result))) {
      // the phase was cancelled while its change was shown: the diff goes, nothing lands
      this.review.discard("the code phase was cancelled");
    }
    if (result.ok) {
      this.log.info(line);
      if (result.note) {
        this.log.warn(`${result.phase}: ${result.note}`);
        void this.ui
          .notify("warning", `Phasewise ${result.phase}: ${plainText(result.note)}`, ACTIONS.openSettings)
          .then((c) => {
            if (c === ACTIONS.openSettings) {
              void this.openSettings({ setting: `${SECTION}.phases` });
            }
          });
      }
      if (options.quiet) {
        return;
      }
      // a phase of the user's own answers as its kind does, under its own name
      const kind = result.kind ?? result.phase;
      if (kind === "code") {
        void vscode.window.setStatusBarMessage(
          `Phasewise ${result.phase}: ${result.applied === false ? "not applied" : "applied"} (${routeOf(result)})`,
          5000,
        );
      } else if (kind === "review" || kind === "qa") {
        const n = result.findings?.length ?? 0;
        void vscode.window.setStatusBarMessage(
          `Phasewise ${result.phase}: ${n} finding${n === 1 ? "" : "s"} (${routeOf(result)})`,
          5000,
        );
      }
      return;
    }
    const problem = result.error;
    this.log.warn(`${line}: ${problem?.kind ?? "?"}: ${problem?.message ?? ""}`);
    if (problem?.kind === "cancelled" && result.applied === false && (result.files?.length ?? 0) > 0) {
      // the user discarded the change in the diff review: the server's words say which
      void this.ui.notify("info", problem.message);
      return;
    }
    if (problem?.kind === "cancelled") {
      void this.ui.notify("info", `Phasewise ${result.phase} cancelled: nothing more was sent, nothing was changed.`);
      return;
    }
    if (options.quiet) {
      return;
    }
    const retry =
      options.uri && problem && !NOT_RETRIED.has(problem.kind)
        ? { uri: options.uri.toString(), phase: result.phase }
        : undefined;
    this.offerFixes(
      "error",
      plainText(problem?.message ?? `Phasewise ${result.phase} failed`),
      problem ?? undefined,
      undefined,
      retry,
    );
  }

  /**
   * Before asking for the instruction: a phase the server's preflight already knows cannot run
   * (a missing key, broken settings) says so, with its fixes, and nothing is asked or sent.
   */
  private async preflightFails(phases: readonly string[], target: Target): Promise<boolean> {
    const report = await this.fetchStatus(target.uri.toString(), false);
    const blocked = report?.phases.find((p) => phases.includes(p.phase) && p.problem);
    if (!blocked?.problem) {
      return false;
    }
    const problem = blocked.problem;
    this.log.warn(`${blocked.phase} cannot run (${problem.kind}): ${problem.message}`);
    this.offerFixes(
      "warning",
      `Phasewise ${blocked.phase} cannot run on ${routeOf(blocked)}: ${plainText(problem.message)}`,
      problem,
      blocked.provider,
    );
    return true;
  }

  /** A problem's notification with the actions that fix it (the palette's names). */
  private offerFixes(
    kind: "warning" | "error",
    message: string,
    problem?: Problem,
    provider?: string,
    retry?: { uri: string; phase: string },
  ): void {
    const actions: string[] = [];
    if (retry) {
      actions.push(ACTIONS.retry); // for a rate limit, the retry waits until it lifts
    }
    if (problem?.keyEnv) {
      actions.push(ACTIONS.setApiKey);
    }
    actions.push(ACTIONS.openSettings, ACTIONS.showOutput);
    void this.ui.notify(kind, message, ...actions).then((choice) => {
      if (choice === ACTIONS.retry && retry) {
        void this.retry(retry);
      } else if (choice === ACTIONS.setApiKey) {
        void this.setApiKey({ env: problem?.keyEnv ?? undefined, provider: problem?.provider ?? provider });
      } else if (choice === ACTIONS.openSettings) {
        void this.openSettings({ setting: problem?.setting ?? `${SECTION}.phases` });
      } else if (choice === ACTIONS.showOutput) {
        this.log.show();
      }
    });
  }

  private fail(err: unknown): void {
    const message = errorText(err);
    if (err instanceof ServerUnavailable) {
      this.showUnavailable(message); // logged once, when the server could not start
    } else {
      this.log.error(message);
      void this.ui
        .notify("error", `Phasewise: ${plainText(message)}`, ACTIONS.showOutput)
        .then((c) => c && this.log.show());
    }
  }

  private showUnavailable(message: string): void {
    const state = this.server.state;
    const actions =
      state === "untrusted"
        ? ["Manage Workspace Trust"]
        : state === "not-found" && this.server.canInstall
          ? [ACTIONS.install, ACTIONS.openSettings, ACTIONS.showOutput]
          : state === "not-found"
            ? ["Copy install command", ACTIONS.openSettings, ACTIONS.showOutput]
            : [ACTIONS.restartServer, ACTIONS.showOutput];
    void this.ui.notify("error", plainText(message), ...actions).then(async (choice) => {
      if (choice === "Manage Workspace Trust") {
        await vscode.commands.executeCommand("workbench.trust.manage");
      } else if (choice === ACTIONS.install) {
        await this.installServer();
      } else if (choice === "Copy install command") {
        await vscode.env.clipboard.writeText(this.server.installCommand ?? REPO_INSTALL_COMMAND);
      } else if (choice === ACTIONS.openSettings) {
        await this.openSettings({ setting: `${SECTION}.server` });
      } else if (choice === ACTIONS.restartServer) {
        await this.restartServer();
      } else if (choice === ACTIONS.showOutput) {
        this.log.show();
      }
    });
  }

  private target(arg?: { uri?: string; range?: LspRange }): Target | undefined {
    if (arg?.uri) {
      return { uri: vscode.Uri.parse(arg.uri), range: arg.range };
    }
    const editor = this.fileEditor();
    if (!editor) {
      void this.ui.notify("warning", "Phasewise: open the file to work on first (the selection, if any, narrows it).");
      return undefined;
    }
    return { uri: editor.document.uri, range: selectionRange(editor) };
  }

  private activeUri(): vscode.Uri | undefined {
    return this.fileEditor()?.document.uri;
  }

  /** The active file editor; with the focus on a Phasewise preview, the file last worked on, if visible. */
  private fileEditor(): vscode.TextEditor | undefined {
    const active = vscode.window.activeTextEditor;
    if (active && WORK_SCHEMES.has(active.document.uri.scheme)) {
      this.lastFile = active.document.uri;
      return active;
    }
    const last = this.lastFile?.toString();
    return vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === last);
  }

  /**
   * The instruction for `phase` (a phase of the user's own is asked as its `kind` is, under its own
   * name and route). Offered: `value` (the plan's instruction, for code), else the last one given for
   * this document and phase (a retry cancelled during its countdown, then Plan again).
   */
  private askInstruction(
    phase: string,
    kind: Phase | "run",
    target: Target,
    value?: string,
  ): Thenable<string | undefined> {
    const scope = target.range ? `lines ${target.range.start.line + 1}–${target.range.end.line + 1}` : "the whole file";
    const prompts: Record<Phase | "run", string> = {
      plan: `What should the plan achieve? (${scope})`,
      code: `What should change? (${scope})${value ? " — keep the plan's instruction to follow that plan" : ""}`,
      review: `What should the review focus on? Optional (${scope})`,
      run: `What should change? Plan → code → review (${scope})`,
    };
    return this.ui.prompter.input({
      title: `Phasewise ${phase}${phase === "run" ? "" : ` · ${this.routeHint(phase)}`}`,
      prompt: prompts[kind],
      value: value ?? this.instructions.get(`${target.uri.toString()} ${phase}`),
      ignoreFocusOut: true,
      validateInput: kind === "review" ? undefined : (v) => (v.trim() ? undefined : "Say what the phase should do"),
    });
  }

  private remember(target: Target, phase: string, instruction: string): void {
    if (instruction.trim()) {
      this.instructions.set(`${target.uri.toString()} ${phase}`, instruction);
    }
  }

  /** What kind of phase `phase` is (plan, code, review), from the server's status. */
  private kindOf(phase: string): Phase {
    const named = this.lastStatus?.phases.find((p) => p.phase === phase)?.kind ?? phase;
    return ((PHASES as readonly string[]).includes(named) ? named : "plan") as Phase;
  }

  private routeHint(phase: string): string {
    const p = this.lastStatus?.phases.find((s) => s.phase === phase);
    return p ? routeOf(p) : "default route";
  }

  /**
   * Verify's report as headings and short lines, not a six-column table: it stays readable in a
   * preview beside the editor (half a screen), long problem messages wrapping under their model.
   */
  private verifyMarkdown(answer: unknown): string {
    const full = `<details><summary>Full answer</summary>\n\n\`\`\`json\n${JSON.stringify(answer, null, 2)}\n\`\`\`\n\n</details>\n`;
    if (!isVerifyReport(answer)) {
      return `# Phasewise: providers verified\n\n${full}`;
    }
    const mark = (ok: boolean) => (ok ? "✓" : "✗");
    const ms = (v?: number | null) => (typeof v === "number" ? ` · ${v.toFixed(0)} ms` : "");
    const problem = (p?: Problem | null) => (p ? `\n  ${p.kind}: ${plainText(p.message)}` : "");
    const providers = answer.providers.flatMap((p) => {
      const key = p.keyEnv
        ? `\`${p.keyEnv}\` ${p.keyMasked ?? "missing"}${p.keyAccepted === false ? " (rejected)" : ""}`
        : "no key needed";
      return [
        `## ${mark(p.ok)} ${p.provider}`,
        "",
        `${[p.protocol, key].filter(Boolean).join(" · ")}${ms(p.latencyMs)}${p.problem ? `\n\n${p.problem.kind}: ${plainText(p.problem.message)}` : ""}`,
        "",
        ...(p.models ?? []).map((m) => `- ${mark(m.ok)} ${m.model}${ms(m.latencyMs)}${problem(m.problem)}`),
        "",
      ];
    });
    const phases = answer.phases.map(
      (p) => `- ${p.status === "ok" ? "✓" : p.status} **${p.phase}** · ${p.route ?? "no route"}${problem(p.problem)}`,
    );
    return [
      `# Phasewise: providers verified ${mark(answer.ok)}`,
      "",
      ...providers,
      "## Phases",
      "",
      ...phases,
      "",
      full,
    ].join("\n");
  }
}
