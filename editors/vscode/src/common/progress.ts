/**
 * The server's work-done progress as a notification with a Cancel button.
 *
 * vscode-languageclient shows server-created progress in the status bar only, where the message
 * is cut off and Cancel hides behind the spinner. This feature takes its place (same capability,
 * same `window/workDoneProgress/create` handler): each phase run is a cancellable notification
 * whose message says what is happening, the wait's number first ("12 s until retry …"), never
 * raw model text. Cancel sends `window/workDoneProgress/cancel`; the command's answer then says
 * `cancelled`. What each run went through is fired to listeners (the plan view) and kept.
 */

import * as vscode from "vscode";
import {
  WorkDoneProgress,
  WorkDoneProgressCancelNotification,
  WorkDoneProgressCreateRequest,
  type BaseLanguageClient,
  type ClientCapabilities,
  type FeatureState,
  type ProgressToken,
  type StaticFeature,
  type WorkDoneProgressBegin,
} from "vscode-languageclient/node";

export type RunState =
  "starting" | "streaming" | "waiting" | "retrying" | "fallback" | "key" | "applying" | "done" | "cancelled";

/** One step of a run, as shown. */
export interface RunStatus {
  token: string;
  /** The server's title, e.g. "Phasewise plan: anthropic/claude-sonnet-4-5". */
  title: string;
  /** The phase named in the title, when it names one. */
  phase?: string;
  state: RunState;
  /** What the notification shows. */
  message: string;
  /** What the plan view shows. */
  view: string;
}

const WAIT = /^(.*?):? ?retrying in (.+?) \(at ([^)]+)\)$/;
/** A retry that waits for a rate limit first (`phasewise.retry`): the number leads, the reason follows. */
const RETRY_WAIT = /^retrying in (.+?) \(at ([^)]+)\): (.+)$/;
const NOW = /^(.*?):? ?retrying now$/;

/** The title of a retry's wait for a rate limit (`Phasewise plan: waiting for the rate limit on p/m`). */
export const LIMIT_WAIT_TITLE = /^Phasewise [^:]+: waiting for the rate limit on (.+)$/;

/** What a server status line means, for the notification and for the plan view. */
export function describeStatus(message: string): { state: RunState; message: string; view: string } {
  const text = message.trim();
  let m = RETRY_WAIT.exec(text);
  if (m) {
    // the title names the limit ("waiting for the rate limit on p/m"): the number is what is new
    return {
      state: "waiting",
      message: `${m[1]} until retry (at ${m[2]})`,
      view: `waiting for the rate limit to lift: retrying in ${m[1]} (at ${m[2]})`,
    };
  }
  m = WAIT.exec(text);
  if (m) {
    const why = m[1];
    const what = /rate.?limit/.test(why) ? "waiting for a rate limit to lift" : "waiting before retrying";
    return {
      state: "waiting",
      message: `${m[2]} until retry (at ${m[3]}) · ${why}`,
      view: `${what}: retrying in ${m[2]} (at ${m[3]}) · ${why}`,
    };
  }
  m = NOW.exec(text);
  if (m) {
    return { state: "retrying", message: `retrying now · ${m[1]}`, view: `retrying · ${m[1]}` };
  }
  if (text.includes("falling back to ")) {
    return { state: "fallback", message: text, view: `on a fallback: ${text}` };
  }
  if (/, trying [A-Za-z_][A-Za-z0-9_]*$/.test(text)) {
    return { state: "key", message: text, view: `trying another key: ${text}` };
  }
  if (/^(the change to .+ is shown for review|applying the change to )/.test(text)) {
    return { state: "applying", message: text, view: text };
  }
  if (text === "" || text === "starting") {
    return { state: "starting", message: "waiting for the first token…", view: "waiting for the first token…" };
  }
  // Anything else is the tail of the streamed answer: not shown raw.
  return { state: "streaming", message: "receiving the answer…", view: "streaming…" };
}

interface Run {
  title: string;
  phase?: string;
  progress?: vscode.Progress<{ message?: string }>;
  resolve?: () => void;
  pending?: string;
  cancelled: boolean;
  subscription?: vscode.Disposable;
}

/** Stable across client restarts: what listeners subscribe to, and the API's view of runs. */
export class ProgressBoard implements vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<RunStatus>();
  readonly onStatus = this.emitter.event;
  private readonly kept: RunStatus[] = [];
  private readonly active = new Map<string, () => void>();

  /** Every status shown lately (the notification's messages, the plan view's lines). */
  history(): RunStatus[] {
    return [...this.kept];
  }

  /** Tokens of runs showing a notification now. */
  running(): string[] {
    return [...this.active.keys()];
  }

  /** What the notification's Cancel button does, for a run by token (all runs without one). */
  cancel(token?: string): number {
    const chosen = token ? [this.active.get(token)] : [...this.active.values()];
    chosen.forEach((cancel) => cancel?.());
    return chosen.filter(Boolean).length;
  }

  fire(status: RunStatus): void {
    this.kept.push(status);
    if (this.kept.length > 300) {
      this.kept.shift();
    }
    this.emitter.fire(status);
  }

  track(token: string, cancel: (() => void) | undefined): void {
    if (cancel) {
      this.active.set(token, cancel);
    } else {
      this.active.delete(token);
    }
  }

  dispose(): void {
    this.emitter.dispose();
  }
}

function ensure<T extends object, K extends keyof T>(target: T, key: K): NonNullable<T[K]> {
  target[key] ??= {} as NonNullable<T[K]>;
  return target[key] as NonNullable<T[K]>;
}

/** Replaces vscode-languageclient's ProgressFeature (see ServerManager). */
export class NotificationProgressFeature implements StaticFeature {
  private readonly runs = new Map<string, Run>();

  constructor(
    private readonly client: BaseLanguageClient,
    private readonly board: ProgressBoard,
  ) {}

  getState(): FeatureState {
    return { kind: "static" };
  }

  fillClientCapabilities(capabilities: ClientCapabilities): void {
    ensure(capabilities, "window").workDoneProgress = true;
  }

  initialize(): void {
    this.client.onRequest(WorkDoneProgressCreateRequest.type, (params) => this.create(params.token));
  }

  clear(): void {
    for (const token of [...this.runs.keys()]) {
      this.finish(token);
    }
  }

  private create(token: ProgressToken): void {
    const key = String(token);
    const run: Run = { title: "Phasewise", cancelled: false };
    this.runs.set(key, run);
    run.subscription = this.client.onProgress(WorkDoneProgress.type, token, (value) => {
      if (value.kind === "begin") {
        this.begin(token, run, value);
      } else if (value.kind === "report") {
        this.show(key, run, value.message ?? "");
      } else {
        if (!run.cancelled) {
          this.board.fire({
            token: key,
            title: run.title,
            phase: run.phase,
            state: "done",
            message: value.message ?? "",
            view: value.message ?? "done",
          });
        }
        this.finish(key);
      }
    });
  }

  private begin(token: ProgressToken, run: Run, value: WorkDoneProgressBegin): void {
    const key = String(token);
    run.title = value.title;
    run.phase = /^Phasewise (\S+):/.exec(value.title)?.[1];
    const cancel = () => {
      if (run.cancelled) {
        return;
      }
      run.cancelled = true;
      void this.client.sendNotification(WorkDoneProgressCancelNotification.type, { token });
      this.board.fire({
        token: key,
        title: run.title,
        phase: run.phase,
        state: "cancelled",
        message: "cancelling…",
        view: "cancelled",
      });
      this.finish(key);
    };
    this.board.track(key, value.cancellable ? cancel : undefined);
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: value.title, cancellable: value.cancellable === true },
      (progress, cancelled) =>
        new Promise<void>((resolve) => {
          if (!this.runs.has(key)) {
            resolve(); // ended before VS Code showed it
            return;
          }
          run.progress = progress;
          run.resolve = resolve;
          cancelled.onCancellationRequested(cancel);
          if (run.pending !== undefined) {
            progress.report({ message: run.pending });
          }
        }),
    );
    this.show(key, run, value.message ?? "");
  }

  private show(key: string, run: Run, message: string): void {
    const status = describeStatus(message);
    const last = this.board
      .history()
      .reverse()
      .find((s) => s.token === key);
    if (last && last.state === status.state && last.message === status.message) {
      return; // one streamed chunk after another: nothing new to say
    }
    run.pending = status.message;
    run.progress?.report({ message: status.message });
    this.board.fire({ token: key, title: run.title, phase: run.phase, ...status });
  }

  private finish(key: string): void {
    const run = this.runs.get(key);
    this.runs.delete(key);
    this.board.track(key, undefined);
    run?.subscription?.dispose();
    run?.resolve?.();
  }
}
