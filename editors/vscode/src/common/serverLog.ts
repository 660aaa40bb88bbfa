/**
 * The server's stdout and stderr, line by line, into the output channel at their own level.
 *
 * vscode-languageclient writes every stderr line as `[error]`, and the server logs each of its
 * info lines twice: to stderr and as `window/logMessage` (which the client logs at its own level).
 * So a stderr record is read for its level (`phasewise LEVEL logger: message`, the server's log
 * format): warnings and errors, which only stderr carries, are logged as such; info and debug
 * records, which `window/logMessage` already brought, go to the trace level (visible with the
 * channel's log level set to Trace). Lines that are not a record (a traceback, Python's own
 * errors before logging starts) take the level of the record they follow, error when none.
 */

import * as readline from "node:readline";
import type * as stream from "node:stream";
import type * as vscode from "vscode";

const RECORD = /^phasewise (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: /;

type Level = "trace" | "warn" | "error";

export function stderrLevel(line: string, previous: Level | undefined): Level {
  const match = RECORD.exec(line);
  if (!match) {
    return previous ?? "error";
  }
  switch (match[1]) {
    case "WARNING":
      return "warn";
    case "ERROR":
    case "CRITICAL":
      return "error";
    default:
      return "trace";
  }
}

function lines(input: stream.Readable, each: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on("line", each);
}

/** `stdioOptions` for the language client. */
export const serverStdio = {
  stdout: (input: stream.Readable, channel: vscode.LogOutputChannel) => lines(input, (line) => channel.info(line)),
  stderr: (input: stream.Readable, channel: vscode.LogOutputChannel) => {
    let previous: Level | undefined;
    lines(input, (line) => {
      if (line.trim() === "") {
        return;
      }
      previous = stderrLevel(line, previous);
      channel[previous](line);
    });
  },
};
