/** Shapes the server returns (shared/contract.md), read defensively: the server may add fields. */

export interface Problem {
  kind: string;
  message: string;
  phase?: string | null;
  provider?: string | null;
  model?: string | null;
  keyEnv?: string | null;
  setting?: string | null;
  retryAfterSeconds?: number | null;
}

export interface Attempt {
  provider: string;
  model: string;
  outcome: string;
}

export interface PhaseResult {
  ok: boolean;
  runId: string;
  phase: string;
  provider: string | null;
  model: string | null;
  text: string;
  usage?: { inputTokens?: number | null; outputTokens?: number | null } | null;
  latencyMs?: { firstToken?: number | null; total?: number | null } | null;
  attempts?: Attempt[];
  error: Problem | null;
  applied?: boolean;
  /** The answer stopped at the model's output limit (the result is still ok; `note` says so). */
  incomplete?: boolean;
  /** What the user should know about an ok result (e.g. cut at the output limit, and how to raise it). */
  note?: string | null;
  /** What kind of answer a phase of the user's own gives (plan, code, review). */
  kind?: string;
  /** Every file a code phase's change touches, each with its diff. */
  files?: { path: string; uri?: string; diff?: string; created?: boolean }[];
  findings?: unknown[];
  costUsd?: number | null;
  /** false: stopped before any request reached a provider; `latencyMs` and `usage` are no measurements. */
  sent?: boolean;
  /** Answered from the response cache. */
  cached?: boolean;
  /** The tool calls of a phase that works in steps, in order. */
  steps?: AgentStep[];
}

/** One tool call of a phase that works in steps; `of` (its maxSteps) only as it happens. */
export interface AgentStep {
  step: number;
  of?: number;
  tool: string;
  summary: string;
  ok: boolean;
  ms: number;
  tokens?: number;
}

export interface StepParams {
  runId: string;
  phase: string;
  uri: string | null;
  step: AgentStep;
}

export interface KeyView {
  env: string;
  present: boolean;
  source: string | null;
  masked: string | null;
}

export interface PhaseStatus {
  phase: string;
  kind?: string;
  provider?: string;
  providerName?: string;
  model?: string;
  protocol?: string;
  baseUrl?: string;
  simulated?: boolean;
  requiresKey?: boolean;
  keys?: KeyView[];
  problem?: Problem | null;
}

export interface StatusReport {
  version?: string;
  phases: PhaseStatus[];
  settingsIssues?: { path: string; message: string }[];
  keysInMemory?: string[];
  /** Provider health from the run record; `flagged`: routes that failed most of their recent requests. */
  health?: {
    flagged?: { route: string; recentFailed?: number; recentRequests?: number; fallbacks?: string[] }[];
  };
}

/** `phasewise.verify`: live checks of each provider in use, then each phase's verdict. */
export interface VerifyReport {
  ok: boolean;
  providers: {
    provider: string;
    protocol?: string | null;
    ok: boolean;
    keyEnv?: string | null;
    keyMasked?: string | null;
    keyAccepted?: boolean | null;
    latencyMs?: number | null;
    models?: { model: string; ok: boolean; latencyMs?: number | null; problem?: Problem | null }[];
    problem?: Problem | null;
  }[];
  phases: { phase: string; route?: string | null; status: string; problem?: Problem | null }[];
}

export function isVerifyReport(value: unknown): value is VerifyReport {
  return isObject(value) && Array.isArray(value.providers) && Array.isArray(value.phases);
}

export interface StreamTextParams {
  runId: string;
  phase: string;
  uri: string | null;
  text: string;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function isPhaseResult(value: unknown): value is PhaseResult {
  // `provider` tells a phase result from the reports that nest them (compare has ok and phase too).
  return isObject(value) && typeof value.ok === "boolean" && typeof value.phase === "string" && "provider" in value;
}

/** Every phase result inside a command's answer (run and compare nest them), in order. */
export function phaseResultsIn(value: unknown, depth = 0): PhaseResult[] {
  if (depth > 4) {
    return [];
  }
  if (isPhaseResult(value)) {
    return [value];
  }
  const children = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : [];
  return children.flatMap((child) => phaseResultsIn(child, depth + 1));
}

export function isStatusReport(value: unknown): value is StatusReport {
  return isObject(value) && Array.isArray(value.phases);
}

/** `provider/model`, or a placeholder when the phase has no route. */
export function routeOf(entry: { provider?: string | null; model?: string | null }): string {
  return entry.provider && entry.model ? `${entry.provider}/${entry.model}` : "no route";
}

/** Whether the phase can authenticate: a key is present, or none is needed. */
export function keyReady(phase: PhaseStatus): boolean {
  if (phase.requiresKey === false) {
    return true;
  }
  const keys = phase.keys ?? [];
  return keys.length === 0 ? phase.requiresKey !== true : keys.some((k) => k.present);
}
