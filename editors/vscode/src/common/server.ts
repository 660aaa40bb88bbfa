/**
 * The language client's life: start `phasewise serve` (only in a trusted workspace), hand it the
 * keys, restart on demand, and send it commands. Configuration pulls are answered by
 * vscode-languageclient from the `phasewise` section, minus the extension's own sub-sections.
 */

import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  MessageType,
  RevealOutputChannelOn,
  ShowMessageNotification,
  ShowMessageRequest,
  State,
  WorkDoneProgressCreateRequest,
  type ClientCapabilities,
  type DynamicFeature,
  type FeatureState,
  type LanguageClientOptions,
  type MessageActionItem,
  type ServerOptions,
  type ShowMessageParams,
  type ShowMessageRequestParams,
  type StaticFeature,
} from "vscode-languageclient/node";

import type { ChangeReview } from "./changeReview";
import { CLIENT_SUBSECTIONS, SECTION, SERVER_SETTINGS, SET_KEYS, STEP, STREAM_TEXT } from "./constants";
import type { ManagedEnvironment } from "./install";
import type { KeyStore } from "./keys";
import { LaunchError, resolveLaunch, type Launch } from "./launch";
import type { Log } from "./log";
import { NotificationProgressFeature, ProgressBoard } from "./progress";
import type { StepParams, StreamTextParams } from "./protocol";
import { serverStdio } from "./serverLog";
import type { NoticeKind, Ui } from "./ui";

export type ServerState = "stopped" | "starting" | "installing" | "running" | "untrusted" | "not-found" | "failed";

/** Why a command could not reach the server; the message says what to do. */
export class ServerUnavailable extends Error {
  constructor(
    message: string,
    readonly state: ServerState,
  ) {
    super(message);
  }
}

/**
 * vscode-languageclient would register a VS Code command for every server command; the
 * extension registers its own under those names instead (they ask for the instruction and show
 * the result), so the built-in forwarding is left out. Its work-done progress (status bar only)
 * is left out too: NotificationProgressFeature takes its place.
 */
class PhasewiseLanguageClient extends LanguageClient {
  override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
    if ("registrationType" in feature && feature.registrationType.method === ExecuteCommandRequest.method) {
      return;
    }
    if (!(feature instanceof NotificationProgressFeature) && isBuiltinProgress(feature)) {
      return;
    }
    super.registerFeature(feature);
  }
}

/**
 * Tells the server this client is the Phasewise plugin: it has the client-side quick-fix commands
 * (so the server offers them, not its own fallbacks) and shows plans itself (so the server does
 * not write them to files for `window/showDocument`).
 */
class PhasewiseCapabilities implements StaticFeature {
  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.experimental = {
      ...(capabilities.experimental as Record<string, unknown> | undefined),
      // setKeyCommand: how the server names this client's own set-key command in its messages
      phasewise: {
        clientCommands: ["phasewise.setApiKey", "phasewise.openSettings"],
        setKeyCommand: "Phasewise: Set API Key…",
      },
    };
  }

  initialize(): void {}

  getState(): FeatureState {
    return { kind: "static" };
  }

  clear(): void {}
}

function isBuiltinProgress(feature: StaticFeature | DynamicFeature<unknown>): boolean {
  try {
    const state = feature.getState();
    return state.kind === "window" && state.id === WorkDoneProgressCreateRequest.method;
  } catch {
    return false;
  }
}

function withoutClientSettings(value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return value;
  }
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const key of CLIENT_SUBSECTIONS) {
    delete copy[key];
  }
  return copy;
}

export class ServerManager implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<LanguageClient | undefined> | undefined;
  private current: ServerState = "stopped";
  private readonly stateEmitter = new vscode.EventEmitter<ServerState>();
  private readonly streamEmitter = new vscode.EventEmitter<StreamTextParams>();
  private readonly stepEmitter = new vscode.EventEmitter<StepParams>();
  private readonly settingsEmitter = new vscode.EventEmitter<void>();
  /** The phase runs' progress notifications, across restarts. */
  readonly progress = new ProgressBoard();
  private readonly forwarded = new Map<string, vscode.Disposable>();
  private readonly disposables: vscode.Disposable[] = [];
  launch: Launch | undefined;
  lastError: string | undefined;
  /** What to run to install the server, when it was not found. */
  installCommand: string | undefined;
  /** Nothing set and nothing found: Install makes the extension's own environment. */
  canInstall = false;
  private installing: Promise<LanguageClient | undefined> | undefined;
  /** Keys handed over in `initializationOptions` (read when the client starts or restarts). */
  private startKeys: Record<string, string> = {};

  readonly onDidChangeState = this.stateEmitter.event;
  readonly onStreamText = this.streamEmitter.event;
  /** Each step of a phase that works in steps, as it ends. */
  readonly onStep = this.stepEmitter.event;
  /** The server's settings changed (the status is worth refreshing). */
  readonly onDidChangeSettings = this.settingsEmitter.event;

  constructor(
    private readonly log: Log,
    private readonly keys: KeyStore,
    /** VS Code commands the extension registers itself; other server commands are forwarded. */
    private readonly ownCommands: ReadonlySet<string>,
    /** Shows a change that needs confirmation as a diff and asks before it lands. */
    private readonly review: ChangeReview,
    /** Where the server's questions are shown (`window/showMessageRequest`). */
    private readonly ui: Ui,
    /** The extension's own environment: looked at last, made by Install. */
    readonly managed: ManagedEnvironment,
  ) {
    this.disposables.push(
      keys.onDidChange((changed) => void this.pushKeys(changed)),
      vscode.workspace.onDidChangeConfiguration((e) => this.configurationChanged(e)),
      vscode.workspace.onDidGrantWorkspaceTrust(() => {
        this.log.info("workspace trusted: starting the language server");
        void this.ensureStarted();
      }),
      this.stateEmitter,
      this.streamEmitter,
      this.stepEmitter,
      this.settingsEmitter,
      this.progress,
    );
  }

  get state(): ServerState {
    return this.current;
  }

  get running(): LanguageClient | undefined {
    return this.client?.isRunning() ? this.client : undefined;
  }

  /** The running client, starting it first if needed; undefined when it cannot start. */
  ensureStarted(): Promise<LanguageClient | undefined> {
    if (this.client?.isRunning()) {
      return Promise.resolve(this.client);
    }
    if (this.current === "installing" && this.installing) {
      return this.installing; // started once installed
    }
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /**
   * Installs (or updates) the server in the extension's own environment, then starts it. A failure
   * is said in a notification; then whatever server is still found starts (none: not found again).
   */
  installServer(): Promise<LanguageClient | undefined> {
    this.installing ??= this.runInstall().finally(() => {
      this.installing = undefined;
    });
    return this.installing;
  }

  private async runInstall(): Promise<LanguageClient | undefined> {
    await this.stop();
    this.setState("installing");
    const started = Date.now();
    try {
      await this.managed.install();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log.error(message);
      void this.ui.notify("error", message, "Show Output").then((c) => c && this.log.show());
      this.setState("stopped");
      return this.ensureStarted();
    }
    this.log.info(`install: done in ${Math.round((Date.now() - started) / 1000)} s`);
    this.lastError = undefined;
    this.setState("starting");
    const client = await this.ensureStarted();
    if (client) {
      // the folder is in the output channel ("install: … installed in …")
      void this.ui.notify("info", `Phasewise ${this.serverVersion() ?? ""} installed and running.`);
    }
    return client;
  }

  async restart(): Promise<LanguageClient | undefined> {
    await this.stop();
    return this.ensureStarted();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop(3000);
      } catch (err) {
        this.log.warn(`stopping the language server: ${String(err)}`);
      }
    }
    this.setState("stopped");
  }

  /** Whether the running server offers `command` (run/verify/compare came later than plan). */
  supports(command: string): boolean | undefined {
    const commands = this.client?.initializeResult?.capabilities.executeCommandProvider?.commands;
    return commands ? commands.includes(command) : undefined;
  }

  serverVersion(): string | undefined {
    return this.client?.initializeResult?.serverInfo?.version;
  }

  /** `workspace/executeCommand` with the contract's one argument object. */
  async execute(command: string, arg: object, token?: vscode.CancellationToken): Promise<unknown> {
    const client = await this.ensureStarted();
    if (!client) {
      throw new ServerUnavailable(this.unavailableMessage(), this.current);
    }
    if (this.supports(command) === false) {
      const message =
        `Phasewise: this language server (${this.serverVersion() ?? "unknown version"}) has no ` +
        `\`${command}\` command yet; update it to ${this.managed.version} (the extension's version) and restart it.`;
      this.log.error(message);
      throw new ServerUnavailable(message, this.current);
    }
    const params = { command, arguments: [arg] };
    return (await client.sendRequest(ExecuteCommandRequest.type, params, token)) as unknown;
  }

  unavailableMessage(): string {
    switch (this.current) {
      case "untrusted":
        return (
          "Phasewise is off in this restricted workspace: its settings choose the providers, URLs " +
          "and key variables the server would use. Trust the workspace to turn Phasewise on."
        );
      case "installing":
        return "Phasewise: the language server is being installed (see its notification).";
      case "not-found":
      case "failed":
        return this.lastError ?? "Phasewise: the language server could not start (see the output channel).";
      default:
        return "Phasewise: the language server is not running.";
    }
  }

  dispose(): void {
    void this.stop();
    for (const d of [...this.disposables, ...this.forwarded.values()]) {
      d.dispose();
    }
  }

  private setState(state: ServerState): void {
    if (state !== this.current) {
      this.current = state;
      this.stateEmitter.fire(state);
    }
  }

  private async start(): Promise<LanguageClient | undefined> {
    if (!vscode.workspace.isTrusted) {
      this.log.info("restricted workspace: the language server is not started until the workspace is trusted");
      this.setState("untrusted");
      return undefined;
    }
    this.setState("starting");
    try {
      this.launch = await resolveLaunch(this.managed);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (message !== this.lastError) {
        this.log.error(message); // once: each command looks again, and finds the same
      }
      this.lastError = message;
      this.installCommand = err instanceof LaunchError ? err.installCommand : undefined;
      this.canInstall = err instanceof LaunchError && err.canInstall;
      this.setState(err instanceof LaunchError ? "not-found" : "failed");
      return undefined;
    }
    const launch = this.launch;
    this.log.info(
      `starting ${[launch.command, ...launch.args].join(" ")} (from ${launch.origin}${launch.version ? `, ${launch.version}` : ""})`,
    );
    const serverOptions: ServerOptions = { command: launch.command, args: launch.args };
    this.startKeys = await this.keys.all();
    const client = new PhasewiseLanguageClient(SECTION, "Phasewise", serverOptions, this.clientOptions());
    client.registerFeature(new NotificationProgressFeature(client, this.progress));
    client.registerFeature(new PhasewiseCapabilities());
    client.onNotification(STREAM_TEXT, (params: StreamTextParams) => this.streamEmitter.fire(params));
    client.onNotification(STEP, (params: StepParams) => this.stepEmitter.fire(params));
    client.onRequest(ShowMessageRequest.type, (params) => this.ask(params));
    client.onNotification(ShowMessageNotification.type, (params) => this.tell(params));
    client.onDidChangeState((e) => {
      // After a crash vscode-languageclient restarts the server: it needs the keys again.
      if (e.newState === State.Running && this.client === client) {
        void this.sendAllKeys(client);
      }
      if (e.newState === State.Stopped && this.client === client) {
        this.setState("stopped");
      }
    });
    try {
      await client.start();
    } catch (err) {
      this.lastError = `Phasewise: the language server failed to start: ${err instanceof Error ? err.message : String(err)}`;
      this.log.error(this.lastError);
      this.setState("failed");
      return undefined;
    }
    this.client = client;
    await this.sendAllKeys(client);
    this.forwardServerCommands(client);
    this.log.info(`language server ${this.serverVersion() ?? ""} running`);
    this.setState("running");
    this.checkVersion(launch);
    return client;
  }

  /**
   * The server's version (initialize's serverInfo) should be the extension's. The extension's own
   * environment is offered an update (the wheel in the .vsix); a server the user chose is only told.
   */
  private checkVersion(launch: Launch): void {
    const server = this.serverVersion();
    const own = this.managed.version;
    if (!server || server === own) {
      return; // said at each start (a restart, a change of phasewise.server.*), never on the way
    }
    if (launch.managed && this.managed.wheel) {
      const message =
        `Phasewise: the language server in the extension's own environment is ${server}, the extension ${own}. ` +
        `Update the server to ${own}?`;
      this.log.warn(message);
      void this.ui.notify("warning", message, "Update").then((c) => {
        if (c === "Update") {
          void this.installServer();
        }
      });
      return;
    }
    const message =
      `Phasewise: the language server (from ${launch.origin}) is ${server}, the extension ${own}; ` +
      `commands may differ between them. Install phasewise ${own} there` +
      (this.managed.wheel ? ` (the extension carries its wheel: ${this.managed.wheel})` : "") +
      (launch.origin.startsWith(SERVER_SETTINGS)
        ? `, or clear ${launch.origin} to let the extension look for one.`
        : ".");
    this.log.warn(message);
    void this.ui.notify("warning", message);
  }

  private clientOptions(): LanguageClientOptions {
    return {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      outputChannel: this.log.channel,
      // stderr lines at their own level, once (see serverLog.ts)
      stdioOptions: serverStdio,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      diagnosticCollectionName: SECTION,
      // The keys also travel with `initialize`, so the first command never races `setKeys`. Named
      // commands from the user's own (global) settings are declared as theirs: they run unasked, while
      // a workspace's are asked about (a restart picks up a change to them).
      initializationOptions: () => {
        const options: Record<string, unknown> = Object.keys(this.startKeys).length > 0 ? { keys: this.startKeys } : {};
        const userCommands = vscode.workspace.getConfiguration(SECTION).inspect("commands")?.globalValue;
        if (userCommands !== undefined) {
          options.userSettings = { commands: userCommands };
        }
        return options;
      },
      middleware: {
        workspace: {
          handleApplyEdit: (params, next) => this.review.handle(params, next),
          configuration: async (params, token, next) => {
            const answer = await next(params, token);
            if (!Array.isArray(answer)) {
              return answer;
            }
            return answer.map((value: unknown, i) =>
              params.items[i]?.section === SECTION ? withoutClientSettings(value) : value,
            );
          },
        },
      },
    };
  }

  private async sendAllKeys(client: LanguageClient): Promise<void> {
    const keys = await this.keys.all();
    if (Object.keys(keys).length > 0) {
      await this.sendKeys(client, keys);
    }
  }

  private async sendKeys(client: LanguageClient | undefined, keys: Record<string, string>): Promise<void> {
    if (!client?.isRunning()) {
      return; // sent in full when the server starts
    }
    await client.sendNotification(SET_KEYS, { keys });
    this.log.info(`keys sent to the server (in memory): ${Object.keys(keys).sort().join(", ")}`);
  }

  /**
   * Hands changed keys ("" = removed) to the running server and checks it took them (the status's
   * `keysInMemory` names, never values). A server that ignores `phasewise/setKeys` is restarted,
   * which hands it every key with `initialize`.
   */
  async pushKeys(changed: Record<string, string>): Promise<void> {
    const client = this.running;
    if (!client) {
      return; // handed over in full when the server starts
    }
    for (const [env, value] of Object.entries(changed)) {
      if (value) {
        this.startKeys[env] = value;
      } else {
        delete this.startKeys[env];
      }
    }
    await this.sendKeys(client, changed);
    let held: unknown;
    try {
      const status = (await this.execute("phasewise.status", {})) as { keysInMemory?: unknown };
      held = status.keysInMemory;
    } catch {
      return;
    }
    if (!Array.isArray(held)) {
      return; // a server that does not say: trust the notification
    }
    const took = Object.entries(changed).every(([env, value]) => held.includes(env) === (value !== ""));
    if (!took) {
      this.log.warn(
        "the server did not take the keys from phasewise/setKeys: restarting it to hand them over at start",
      );
      await this.restart();
    }
  }

  /**
   * The server's questions (`window/showMessageRequest`, e.g. "Run `pytest -q` in shop/?" with
   * Allow once · Always for this workspace · Deny): a notification with the actions as buttons, as
   * vscode-languageclient shows them, but through the extension's notifier (which the test driver
   * observes). Dismissed: no action.
   */
  private async ask(params: ShowMessageRequestParams): Promise<MessageActionItem | null> {
    const kind: NoticeKind =
      params.type === MessageType.Error ? "error" : params.type === MessageType.Warning ? "warning" : "info";
    const actions = params.actions ?? [];
    const picked = await this.ui.notify(kind, params.message, ...actions.map((a) => a.title));
    return actions.find((a) => a.title === picked) ?? null;
  }

  /**
   * The server's messages (`window/showMessage`), shown as vscode-languageclient shows them, through
   * the extension's notifier; except a settings problem ("Phasewise settings: …"): while the user
   * types in settings.json every in-between value would raise one. Those go to the output channel;
   * settings.json's own diagnostics and the phase's status bar item show them.
   */
  private tell(params: ShowMessageParams): void {
    if (params.message.startsWith("Phasewise settings: ")) {
      this.log.warn(params.message);
      this.settingsEmitter.fire();
      return;
    }
    const kind: NoticeKind =
      params.type === MessageType.Error ? "error" : params.type === MessageType.Warning ? "warning" : "info";
    void this.ui.notify(kind, params.message);
  }

  private forwardServerCommands(client: LanguageClient): void {
    const commands = client.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
    for (const command of commands) {
      if (this.ownCommands.has(command) || this.forwarded.has(command)) {
        continue;
      }
      this.forwarded.set(
        command,
        vscode.commands.registerCommand(command, (arg?: object) => this.execute(command, arg ?? {})),
      );
    }
  }

  private configurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (e.affectsConfiguration(SERVER_SETTINGS)) {
      if (this.current !== "installing" && (this.client || this.current === "not-found" || this.current === "failed")) {
        this.log.info(`${SERVER_SETTINGS} changed: restarting the language server`);
        void this.restart();
      }
      return;
    }
    if (e.affectsConfiguration(SECTION) && !e.affectsConfiguration(`${SECTION}.trace`)) {
      // Pull model: the notification only tells the server to pull `phasewise` again.
      void this.running?.sendNotification(DidChangeConfigurationNotification.type, { settings: null });
      this.settingsEmitter.fire();
    }
  }
}
