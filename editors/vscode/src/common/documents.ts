/**
 * Read-only Markdown documents the extension shows: a plan, streamed as it arrives
 * (`phasewise/streamText`), and reports (status, verify, compare). A phase that works in steps
 * lists its steps as they happen (`phasewise/step`): above the plan in the plan's view, and for
 * any other phase in a view of its own, opened at its first step and completed by its result. They live in memory under
 * their own URI schemes, so closing one never asks to save, and open rendered (Markdown
 * preview). One plan view per document: a new plan or a retry of the same document reuses it,
 * and its status line says what the run is doing (waiting for a rate limit, retrying, on a
 * fallback, streaming, cancelled).
 */

import * as path from "node:path";
import * as vscode from "vscode";

import { PLAN_SCHEME, REPORT_SCHEME } from "./constants";
import { LIMIT_WAIT_TITLE, type RunStatus } from "./progress";
import { routeOf, type AgentStep, type PhaseResult, type StepParams, type StreamTextParams } from "./protocol";

interface PlanEntry {
  uri: vscode.Uri;
  /** The phase whose answer this view shows: plan, or a plan-kind phase of the user's own. */
  phase: string;
  source: string;
  instruction: string;
  runId?: string;
  header: string;
  body: string;
  footer: string;
  chunks: number;
  result?: PhaseResult;
  name: string;
  route: string;
  /** Every status line the view showed for the current run. */
  states: string[];
  running: boolean;
  /** The steps of a phase that works in steps, as they happened. */
  steps: AgentStep[];
  /** "plan": a plan-kind phase's answer (handed to the code phase); "steps": another phase's steps. */
  view: "plan" | "steps";
}

/** Markdown's own characters in a step's summary (a glob's `*`, a pattern's `\b`) shown as typed. */
function literal(text: string): string {
  return text.replace(/[\\`*_[\]<>#|~]/g, (c) => `\\${c}`);
}

/** One step as a Markdown list item: `- 4/25 read_file app.py: lines 1–40 of 40 · 3 ms`, a failed one marked ✗. */
export function stepLine(step: AgentStep): string {
  const at = typeof step.of === "number" ? `${step.step}/${step.of}` : `${step.step}`;
  return `- ${at} ${step.ok ? "" : "✗ "}${literal(step.summary)} · ${Math.round(step.ms)} ms`;
}

export function describeResult(result: PhaseResult): string {
  const parts = [`${result.phase} ${result.ok ? "served" : "failed"} by ${routeOf(result)}`];
  if (result.sent === false) {
    // stopped before any request left (settings, preflight, a cooldown, the response cache): its
    // time and tokens are not measurements (the contract)
    parts.push(result.cached ? "from the response cache, nothing sent" : "nothing sent");
    return parts.join(", ");
  }
  const total = result.latencyMs?.total;
  if (typeof total === "number") {
    parts.push(`in ${(total / 1000).toFixed(1)} s`);
  }
  const tokensIn = result.usage?.inputTokens;
  const tokensOut = result.usage?.outputTokens;
  if (tokensIn != null || tokensOut != null) {
    parts.push(`${tokensIn ?? "?"} → ${tokensOut ?? "?"} tokens`);
  }
  // a retry, a rotation or a fallback (a phase that works in steps makes one ok attempt a step)
  if ((result.attempts?.length ?? 0) > 1 && result.attempts!.some((a) => a.outcome !== "ok")) {
    parts.push(`attempts: ${result.attempts!.map((a) => `${a.provider}/${a.model} (${a.outcome})`).join(" → ")}`);
  }
  return parts.join(", ");
}

export class PhasewiseDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly plans = new Map<string, PlanEntry>();
  private readonly reports = new Map<string, string>();
  /** The route of each phase's latest run, from its progress title. */
  private readonly routes = new Map<string, string>();
  /** The latest successful plan of each document (its view may show a later failed run). */
  private readonly good = new Map<string, { instruction: string; text: string; runId: string }>();
  private readonly registrations: vscode.Disposable[];

  constructor() {
    this.registrations = [
      vscode.workspace.registerTextDocumentContentProvider(PLAN_SCHEME, this),
      vscode.workspace.registerTextDocumentContentProvider(REPORT_SCHEME, this),
      // A preview brought back into view (another tab had covered it) re-renders what VS Code
      // last read of the document: tell it the document changed, so it shows the current one.
      vscode.window.tabGroups.onDidChangeTabs((e) => {
        for (const tab of e.changed) {
          if (tab.isActive && tab.input instanceof vscode.TabInputWebview) {
            this.refreshPreview(tab.label);
          }
        }
      }),
    ];
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    const plan = this.plans.get(uri.toString());
    if (plan) {
      const steps = plan.steps.length > 0 ? `${plan.steps.map(stepLine).join("\n")}\n\n` : "";
      return `${plan.header}${plan.footer}\n\n${steps}${plan.body}`;
    }
    return this.reports.get(uri.toString()) ?? "";
  }

  /**
   * The plan view of `source`, shown rendered beside the editor, emptied for a new run and filled
   * as it streams. `instruction` undefined (a retry): the view's previous instruction.
   */
  async beginPlan(
    source: vscode.Uri,
    instruction: string | undefined,
    route: string,
    phase = "plan",
  ): Promise<vscode.Uri> {
    const name = path.basename(source.path) || "untitled";
    const uri = this.viewUri(source, phase);
    const asked = instruction ?? this.plans.get(uri.toString())?.instruction ?? "retry";
    const title = phase === "plan" ? "Plan" : phase;
    this.plans.set(uri.toString(), {
      uri,
      phase,
      source: source.toString(),
      instruction: asked,
      header: `# ${title}: ${asked}\n\n`,
      footer: "",
      body: "",
      chunks: 0,
      name,
      route,
      states: [],
      running: true,
      steps: [],
      view: "plan",
    });
    this.setStatus(this.plans.get(uri.toString())!, "waiting for the first token…");
    await this.show(uri);
    return uri;
  }

  /** A progress step of a run: the running plan view of that phase shows it. */
  onRunStatus(status: RunStatus): void {
    const waitFor = LIMIT_WAIT_TITLE.exec(status.title)?.[1]; // a retry waiting for a rate limit
    const route = waitFor ?? /^Phasewise [^:]+:\s*(.+)$/.exec(status.title)?.[1];
    if (status.phase && route) {
      this.routes.set(status.phase, route); // for a view its phase's first step opens
    }
    const running = [...this.plans.values()].filter((p) => p.running && p.phase === status.phase);
    const entry = running[running.length - 1];
    if (!entry) {
      return;
    }
    if (route) {
      entry.route = route; // a retry on the route its last run took, or a fallback's
    }
    if (status.state === "done") {
      if (waitFor) {
        this.setStatus(entry, `the rate limit has lifted: retrying now`);
        return;
      }
      // the phase is over (in a run, the next phase starts): its view says so now, not when the run ends
      entry.running = false;
      entry.route = ""; // the end message names the route
      this.setStatus(entry, status.view);
      return;
    }
    if (!(status.state === "streaming" && entry.chunks > 0)) {
      this.setStatus(entry, status.view);
    }
  }

  /**
   * A step of a phase that works in steps: listed in the view of that run; a plan-kind phase's
   * waiting view is bound to it; any other phase gets a view of its own at its first step (the
   * file's `<name> <phase>.md`, reused by its next run).
   */
  onStep(params: StepParams): void {
    if (!params.uri || typeof params.step !== "object" || params.step === null) {
      return;
    }
    let entry = [...this.plans.values()].find((p) => p.runId === params.runId && p.phase === params.phase);
    entry ??= [...this.plans.values()].find(
      (p) => p.phase === params.phase && p.source === params.uri && !p.runId && !p.result,
    );
    if (!entry) {
      const source = vscode.Uri.parse(params.uri);
      const name = path.basename(source.path) || "untitled";
      const uri = this.viewUri(source, params.phase);
      entry = {
        uri,
        phase: params.phase,
        source: params.uri,
        instruction: "",
        header: `# ${params.phase} · ${name}\n\n`,
        footer: "",
        body: "",
        chunks: 0,
        name,
        route: this.routes.get(params.phase) ?? "",
        states: [],
        running: true,
        steps: [],
        view: "steps",
      };
      this.plans.set(uri.toString(), entry);
      this.setStatus(entry, "working in steps…");
      void this.show(uri);
    }
    entry.runId = params.runId;
    entry.steps.push(params.step);
    this.changed.fire(entry.uri);
  }

  /** A phase's result completes the view its steps went to (a plan's view: `finishPlan`). */
  finishSteps(result: PhaseResult): void {
    const entry = [...this.plans.values()].find(
      (p) => p.runId === result.runId && p.phase === result.phase && p.view === "steps",
    );
    if (!entry) {
      return;
    }
    entry.result = result;
    entry.running = false;
    entry.route = routeOf(result);
    if (entry.steps.length === 0) {
      entry.steps = result.steps ?? [];
    }
    entry.body = result.text ?? "";
    let outcome = result.ok
      ? describeResult(result)
      : `${describeResult(result)} — ${result.error?.message ?? "failed"}`;
    if (result.ok && (result.applied !== undefined || (result.files?.length ?? 0) > 0)) {
      const n = result.files?.length ?? 0;
      outcome += ` — ${result.applied ? "applied" : "not applied"}, ${n} file${n === 1 ? "" : "s"}`;
    }
    entry.footer = `_${outcome}_`;
    if (result.note) {
      entry.footer += `\n\n> **${result.incomplete ? "incomplete" : "note"}**: ${result.note}`;
    }
    this.changed.fire(entry.uri);
  }

  /** Streamed plan text: goes to the plan of that run, or binds the oldest waiting plan of the document. */
  onStream(params: StreamTextParams): void {
    if (!params.uri) {
      return;
    }
    // a run's phases share its run id: the code phase's answer never goes into the plan's view
    let entry = [...this.plans.values()].find((p) => p.runId === params.runId && p.phase === params.phase);
    entry ??= [...this.plans.values()].find(
      (p) => p.phase === params.phase && p.source === params.uri && !p.runId && !p.result,
    );
    if (!entry) {
      return;
    }
    entry.runId = params.runId;
    entry.body += params.text;
    entry.chunks += 1;
    if (entry.chunks === 1) {
      this.setStatus(entry, "streaming…");
    }
    this.changed.fire(entry.uri);
  }

  finishPlan(uri: vscode.Uri, result: PhaseResult | undefined, failure?: string): void {
    const entry = this.plans.get(uri.toString());
    if (!entry) {
      return;
    }
    entry.result = result;
    entry.running = false;
    if (result && entry.steps.length === 0 && (entry.runId === undefined || entry.runId === result.runId)) {
      entry.steps = result.steps ?? []; // the steps it reported, when their notifications did not come
    }
    if (result?.ok) {
      entry.body = result.text || entry.body;
      entry.footer = `_${describeResult(result)}_`;
      if (result.note) {
        // cut at the output limit: said above the plan, not only in a notification
        entry.footer += `\n\n> **${result.incomplete ? "incomplete" : "note"}**: ${result.note}`;
      }
      this.good.set(entry.source, { instruction: entry.instruction, text: result.text, runId: result.runId });
    } else if (result?.error?.kind === "cancelled") {
      entry.footer = `_${entry.name} · ${routeOf(result)} · cancelled_`;
      entry.states.push("cancelled");
    } else {
      const message = result?.error?.message ?? failure ?? "the plan phase did not finish";
      entry.footer = `_${result ? describeResult(result) : "not run"}_\n\n> **${result?.error?.kind ?? "failed"}**: ${message}`;
    }
    this.changed.fire(entry.uri);
  }

  /** The view of `phase` for `source`: `<file> <phase>.md`. */
  private viewUri(source: vscode.Uri, phase: string): vscode.Uri {
    const name = path.basename(source.path) || "untitled";
    return vscode.Uri.from({
      scheme: PLAN_SCHEME,
      path: `/${name} ${phase}.md`,
      query: `for=${encodeURIComponent(source.toString())}`,
    });
  }

  planEntry(uri: vscode.Uri): Readonly<PlanEntry> | undefined {
    return this.plans.get(uri.toString());
  }

  /** The latest successful plan for `source`, to hand to the code phase. */
  latestPlan(source: vscode.Uri): { instruction: string; text: string; runId: string } | undefined {
    return this.good.get(source.toString());
  }

  async showReport(title: string, markdown: string): Promise<vscode.Uri> {
    const uri = vscode.Uri.from({ scheme: REPORT_SCHEME, path: `/${title}.md` });
    this.reports.set(uri.toString(), markdown);
    await this.show(uri);
    return uri;
  }

  dispose(): void {
    for (const registration of this.registrations) {
      registration.dispose();
    }
    this.changed.dispose();
  }

  private setStatus(entry: PlanEntry, line: string): void {
    entry.states.push(line);
    entry.footer = `_${[entry.name, entry.route, line].filter((part) => part !== "").join(" · ")}_`;
    this.changed.fire(entry.uri);
  }

  private refreshPreview(label: string): void {
    for (const uri of [...[...this.plans.values()].map((p) => p.uri.toString()), ...this.reports.keys()]) {
      if (label === `Preview ${path.basename(vscode.Uri.parse(uri).path)}`) {
        this.changed.fire(vscode.Uri.parse(uri));
      }
    }
  }

  private previewOpen(uri: vscode.Uri): boolean {
    const label = `Preview ${path.basename(uri.path)}`;
    return vscode.window.tabGroups.all.some((g) =>
      g.tabs.some((t) => t.input instanceof vscode.TabInputWebview && t.label === label),
    );
  }

  /** Opens `uri` rendered, beside the editor; an open preview of it follows its changes, so none is added. */
  private async show(uri: vscode.Uri): Promise<void> {
    const doc = await vscode.workspace.openTextDocument(uri); // `.md`: a Markdown document
    this.changed.fire(uri);
    if (this.previewOpen(uri)) {
      return; // the open preview follows the document's changes: no second tab
    }
    const before = vscode.window.activeTextEditor;
    try {
      await vscode.commands.executeCommand("markdown.showPreviewToSide", uri);
      if (before && vscode.window.activeTextEditor !== before) {
        // the preview took the focus: give it back to the file being worked on
        await vscode.window.showTextDocument(before.document, { viewColumn: before.viewColumn, preserveFocus: false });
      }
    } catch {
      // no Markdown preview (the built-in extension disabled): the source, then
      await vscode.window.showTextDocument(doc, {
        viewColumn: vscode.ViewColumn.Beside,
        preview: false,
        preserveFocus: true,
      });
    }
  }
}
