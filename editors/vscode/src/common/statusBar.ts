/**
 * One status bar item: each phase's provider/model and whether its key is there; a click shows
 * Status, which offers the actions (Set API Key…, Open Settings, Verify Providers, …).
 */

import * as vscode from "vscode";

import type { ServerState } from "./server";
import { keyReady, routeOf, type PhaseStatus, type StatusReport } from "./protocol";

/** The settings issues of one phase's own entry (`phasewise.phases.<phase>…`). */
function issuesOf(phase: string, report: StatusReport): { path: string; message: string }[] {
  const prefix = `phasewise.phases.${phase}`;
  return (report.settingsIssues ?? []).filter(
    (i) => i.path === prefix || i.path.startsWith(`${prefix}.`) || i.path.startsWith(`${prefix}[`),
  );
}

/** `code: zai/glm-4.7`; a phase with a problem names it (`code: settings (model)`), never just "no route". */
export function phaseText(phase: PhaseStatus, report: StatusReport): string {
  const problem = phase.problem;
  const issue = issuesOf(phase.phase, report)[0];
  if (!problem && !issue) {
    return `${keyReady(phase) ? "$(pass)" : "$(key)"} ${phase.phase}: ${routeOf(phase)}`;
  }
  const setting = problem?.setting ?? issue?.path;
  const field = setting?.startsWith(`phasewise.phases.${phase.phase}.`)
    ? setting.slice(`phasewise.phases.${phase.phase}.`.length)
    : setting?.replace(/^phasewise\./, "");
  const what =
    problem && problem.kind !== "config" ? problem.kind.replace(/-/g, " ") : `settings${field ? ` (${field})` : ""}`;
  const route = phase.provider && phase.model ? `${routeOf(phase)} · ` : "";
  return `$(error) ${phase.phase}: ${route}${what}`;
}

function keyCell(phase: PhaseStatus): string {
  if (phase.requiresKey === false) {
    return "not needed";
  }
  const keys = phase.keys ?? [];
  if (keys.length === 0) {
    return "—";
  }
  return keys
    .map((k) => (k.present ? `\`${k.env}\` ✓ ${k.masked ?? ""} (${k.source ?? "?"})` : `\`${k.env}\` **missing**`))
    .join("<br>");
}

export function statusMarkdown(report: StatusReport): string {
  const rows = report.phases.map(
    (p) =>
      `| ${p.phase} | ${routeOf(p)} | ${p.protocol ?? ""} | ${keyCell(p)} | ${p.problem ? `${p.problem.kind}: ${p.problem.message}` : "ok"} |`,
  );
  const issues = (report.settingsIssues ?? []).map((i) => `- \`${i.path}\`: ${i.message}`);
  return [
    "| phase | model | protocol | key | problem |",
    "|---|---|---|---|---|",
    ...rows,
    ...(issues.length ? ["", "**Settings issues**", ...issues] : []),
  ].join("\n");
}

/**
 * One item while the server starts or cannot run; once it reports, one item per phase (VS Code
 * cuts a long status bar item at 40% of the window's width, so one item for all would hide the
 * last routes).
 */
export class StatusBar implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  private readonly phaseItems = new Map<string, vscode.StatusBarItem>();

  constructor() {
    this.item = vscode.window.createStatusBarItem("phasewise.status", vscode.StatusBarAlignment.Left, 50);
    this.item.name = "Phasewise";
    this.item.command = "phasewise.status";
    this.showState("starting");
  }

  /** What the status bar shows, all items together. */
  get text(): string {
    return this.phaseItems.size === 0 ? this.item.text : [...this.phaseItems.values()].map((i) => i.text).join("  ");
  }

  /** Each phase's item as shown: its text, whether it is painted as a problem, its tooltip. */
  get phases(): { phase: string; text: string; painted: boolean; tooltip: string }[] {
    return [...this.phaseItems].map(([phase, item]) => ({
      phase,
      text: item.text,
      painted: item.backgroundColor !== undefined,
      tooltip: typeof item.tooltip === "string" ? item.tooltip : (item.tooltip?.value ?? ""),
    }));
  }

  showState(state: ServerState, detail?: string): void {
    const texts: Record<ServerState, [string, string]> = {
      starting: ["$(sync~spin) Phasewise", "Starting the Phasewise language server…"],
      installing: ["$(sync~spin) Phasewise: installing", "Installing the Phasewise language server…"],
      running: ["$(pass) Phasewise", "Phasewise is running."],
      stopped: ["$(circle-slash) Phasewise", "The Phasewise language server is stopped. Click for status."],
      untrusted: ["$(shield) Phasewise: restricted", "Phasewise is off until this workspace is trusted."],
      "not-found": ["$(error) Phasewise: server not found", detail ?? "The `phasewise` language server was not found."],
      failed: ["$(error) Phasewise", detail ?? "The Phasewise language server failed to start."],
    };
    const [text, tooltip] = texts[state];
    this.clearPhases();
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.backgroundColor =
      state === "not-found" || state === "failed" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
    this.item.show();
  }

  showReport(report: StatusReport): void {
    const table = `${statusMarkdown(report)}${healthMarkdown(report)}\n\n_Click for actions: Set API Key…, Open Settings, Verify Providers._`;
    const seen = new Set<string>();
    report.phases.forEach((phase, index) => {
      seen.add(phase.phase);
      let item = this.phaseItems.get(phase.phase);
      if (!item) {
        item = vscode.window.createStatusBarItem(
          `phasewise.status.${phase.phase}`,
          vscode.StatusBarAlignment.Left,
          200 - index, // contiguous, before the Problems item (priority 50)
        );
        item.name = `Phasewise ${phase.phase}`;
        item.command = "phasewise.status";
        this.phaseItems.set(phase.phase, item);
      }
      // each item its own phase's problem: another phase's broken entry does not paint it
      const own = phase.problem
        ? [`${phase.problem.kind}: ${phase.problem.message}`]
        : issuesOf(phase.phase, report).map((i) => `\`${i.path}\`: ${i.message}`);
      const tooltip = new vscode.MarkdownString(
        `**Phasewise** ${report.version ?? ""}\n\n${own.map((line) => `**${phase.phase}** — ${line}\n\n`).join("")}${table}`,
      );
      tooltip.supportHtml = true;
      item.text = phaseText(phase, report);
      item.tooltip = tooltip;
      item.backgroundColor = own.length > 0 ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
      item.show();
    });
    for (const [name, item] of this.phaseItems) {
      if (!seen.has(name)) {
        item.dispose();
        this.phaseItems.delete(name);
      }
    }
    if (this.phaseItems.size > 0) {
      this.item.hide();
    }
  }

  dispose(): void {
    this.clearPhases();
    this.item.dispose();
  }

  private clearPhases(): void {
    for (const item of this.phaseItems.values()) {
      item.dispose();
    }
    this.phaseItems.clear();
  }
}

/** The routes the run record flags (most recent requests failed), with their fallbacks. */
function healthMarkdown(report: StatusReport): string {
  const flagged = report.health?.flagged ?? [];
  if (flagged.length === 0) {
    return "";
  }
  const lines = flagged.map(
    (f) =>
      `- $(warning) \`${f.route}\` failed ${f.recentFailed ?? 0} of its last ${f.recentRequests ?? 0} requests` +
      (f.fallbacks?.length ? ` (fallbacks: ${f.fallbacks.join(", ")})` : " (no fallback configured)"),
  );
  return `\n\n**Provider health**\n\n${lines.join("\n")}`;
}
