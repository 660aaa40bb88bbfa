/** Names shared with the server (shared/contract.md) and the extension's own identifiers. */

export const SECTION = "phasewise";
/** Sub-sections of `phasewise` that configure the extension, never sent to the server. */
export const CLIENT_SUBSECTIONS = ["server", "trace"] as const;
export const SERVER_SETTINGS = `${SECTION}.server`;

export const PHASES = ["plan", "code", "review"] as const;
export type Phase = (typeof PHASES)[number];

/** Server → client: new streamed text of a running phase. */
export const STREAM_TEXT = "phasewise/streamText";
/** Server → client: a step of a phase that works in steps, as it ends. */
export const STEP = "phasewise/step";
/** Client → server: keys, held in the server's memory only. */
export const SET_KEYS = "phasewise/setKeys";

export const PLAN_SCHEME = "phasewise-plan";
export const REPORT_SCHEME = "phasewise-report";

/** The source of the server's problem diagnostics. Findings are `phasewise-<phase>` (`phasewise-review`,
 * `phasewise-security` for a review of the user's own): the extension reads none of them by name. */
export const PROBLEM_SOURCE = "phasewise";

export const REPO_INSTALL_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e .";
