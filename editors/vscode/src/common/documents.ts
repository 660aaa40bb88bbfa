/**
 * Read-only Markdown documents the extension shows: a plan, streamed as it arrives
 * (`phasewise/streamText`), and reports (status, verify, compare). They live in memory under
 * their own URI schemes, so closing one never asks to save.
 */

import * as path from "node:path";
import * as vscode from "vscode";

import { PLAN_SCHEME, REPORT_SCHEME } from "./constants";
import { routeOf, type PhaseResult, type StreamTextParams } from "./protocol";

interface PlanEntry {
  uri: vscode.Uri;
  source: string;
  instruction: string;
  runId?: string;
  header: string;
  body: string;
  footer: string;
  chunks: number;
  result?: PhaseResult;
}

export function describeResult(result: PhaseResult): string {
  const parts = [`${result.phase} ${result.ok ? "served" : "failed"} by ${routeOf(result)}`];
  const total = result.latencyMs?.total;
  if (typeof total === "number") {
    parts.push(`in ${(total / 1000).toFixed(1)} s`);
  }
  const tokensIn = result.usage?.inputTokens;
  const tokensOut = result.usage?.outputTokens;
  if (tokensIn != null || tokensOut != null) {
    parts.push(`${tokensIn ?? "?"} → ${tokensOut ?? "?"} tokens`);
  }
  if ((result.attempts?.length ?? 0) > 1) {
    parts.push(`attempts: ${result.attempts!.map((a) => `${a.provider}/${a.model} (${a.outcome})`).join(" → ")}`);
  }
  return parts.join(", ");
}

export class PhasewiseDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly plans = new Map<string, PlanEntry>();
  private readonly reports = new Map<string, string>();
  private counter = 0;
  private readonly registrations: vscode.Disposable[];

  constructor() {
    this.registrations = [
      vscode.workspace.registerTextDocumentContentProvider(PLAN_SCHEME, this),
      vscode.workspace.registerTextDocumentContentProvider(REPORT_SCHEME, this),
    ];
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    const plan = this.plans.get(uri.toString());
    if (plan) {
      return `${plan.header}${plan.footer}\n\n${plan.body}`;
    }
    return this.reports.get(uri.toString()) ?? "";
  }

  /** A new plan document for `source`, shown beside the editor, filled as the plan streams in. */
  async beginPlan(source: vscode.Uri, instruction: string, route: string): Promise<vscode.Uri> {
    const name = path.basename(source.path) || "untitled";
    const uri = vscode.Uri.from({ scheme: PLAN_SCHEME, path: `/${name} plan.md`, query: `n=${++this.counter}` });
    this.plans.set(uri.toString(), {
      uri,
      source: source.toString(),
      instruction,
      header: `# Plan: ${instruction}\n\n`,
      footer: `_${name} · ${route} · streaming…_`,
      body: "",
      chunks: 0,
    });
    await this.show(uri);
    return uri;
  }

  /** Streamed plan text: goes to the plan of that run, or binds the oldest waiting plan of the document. */
  onStream(params: StreamTextParams): void {
    if (params.phase !== "plan" || !params.uri) {
      return;
    }
    let entry = [...this.plans.values()].find((p) => p.runId === params.runId);
    entry ??= [...this.plans.values()].find((p) => p.source === params.uri && !p.runId && !p.result);
    if (!entry) {
      return;
    }
    entry.runId = params.runId;
    entry.body += params.text;
    entry.chunks += 1;
    this.changed.fire(entry.uri);
  }

  finishPlan(uri: vscode.Uri, result: PhaseResult | undefined, failure?: string): void {
    const entry = this.plans.get(uri.toString());
    if (!entry) {
      return;
    }
    entry.result = result;
    if (result?.ok) {
      entry.body = result.text || entry.body;
      entry.footer = `_${describeResult(result)}_`;
    } else {
      const message = result?.error?.message ?? failure ?? "the plan phase did not finish";
      entry.footer = `_${result ? describeResult(result) : "not run"}_\n\n> **${result?.error?.kind ?? "failed"}**: ${message}`;
    }
    this.changed.fire(entry.uri);
  }

  planEntry(uri: vscode.Uri): Readonly<PlanEntry> | undefined {
    return this.plans.get(uri.toString());
  }

  /** The latest successful plan for `source`, to hand to the code phase. */
  latestPlan(source: vscode.Uri): { instruction: string; text: string; runId: string } | undefined {
    const done = [...this.plans.values()].filter((p) => p.source === source.toString() && p.result?.ok);
    const last = done[done.length - 1];
    return last?.result
      ? { instruction: last.instruction, text: last.result.text, runId: last.result.runId }
      : undefined;
  }

  async showReport(title: string, markdown: string): Promise<vscode.Uri> {
    const uri = vscode.Uri.from({ scheme: REPORT_SCHEME, path: `/${title}.md`, query: `n=${++this.counter}` });
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

  private async show(uri: vscode.Uri): Promise<void> {
    const doc = await vscode.workspace.openTextDocument(uri); // `.md`: opens as Markdown
    await vscode.window.showTextDocument(doc, {
      viewColumn: vscode.ViewColumn.Beside,
      preview: false,
      preserveFocus: true,
    });
  }
}
