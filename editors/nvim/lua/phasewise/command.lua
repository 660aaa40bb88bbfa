--- `:[range]Phasewise {subcommand} [args]`: each subcommand runs one server command on the
--- current buffer; `:Phasewise {phase}` runs any phase the server knows by name (`phasewise.phase`).
--- The rest of the command line is the instruction; without one, it is asked for.
local client_mod = require("phasewise.client")
local scratch = require("phasewise.scratch")

local M = {}

local INFO, WARN, ERROR = vim.log.levels.INFO, vim.log.levels.WARN, vim.log.levels.ERROR

--- What a command's answer says when it comes: held while the user types (`phasewise.say`).
--- @param msg string
--- @param level integer?
local function say(msg, level)
  require("phasewise").say(msg, level)
end

--- @class phasewise.Invocation
--- @field buf integer the buffer the command was run in
--- @field rest string the command line after the subcommand
--- @field range [integer, integer]? 1-based first and last line, when a range was given

--- @param inv phasewise.Invocation
--- @return vim.lsp.Client?
local function attached(inv)
  local client = client_mod.get(inv.buf)
  if not client then
    vim.notify(
      ("Phasewise is not attached to this buffer (filetype %q): see :checkhealth phasewise"):format(
        vim.bo[inv.buf].filetype
      ),
      ERROR
    )
  end
  return client
end

--- The client of this buffer or, for commands that need no document, any running one; with the
--- buffer's URI when it is attached.
--- @param inv phasewise.Invocation
--- @return vim.lsp.Client?, string?
local function any_client(inv)
  local own = client_mod.get(inv.buf)
  local client = own or client_mod.get()
  if not client then
    vim.notify("Phasewise: no server is running: see :checkhealth phasewise", ERROR)
  end
  return client, own and vim.uri_from_bufnr(inv.buf) or nil
end

--- The argument object of a phase command: {uri, range?, instruction}.
--- @param client vim.lsp.Client
--- @param inv phasewise.Invocation
--- @param instruction string?
--- @return table
local function phase_arg(client, inv, instruction)
  local arg = { uri = vim.uri_from_bufnr(inv.buf), instruction = instruction }
  if inv.range then
    local first, last = inv.range[1] - 1, inv.range[2] - 1
    local text = vim.api.nvim_buf_get_lines(inv.buf, last, last + 1, false)[1] or ""
    arg.range = {
      start = { line = first, character = 0 },
      ["end"] = { line = last, character = vim.lsp.util.character_offset(inv.buf, last, #text, client.offset_encoding) },
    }
  end
  return arg
end

--- Call `fn` with the command line's rest or, when there is none, what the user types.
--- @param inv phasewise.Invocation
--- @param prompt string
--- @param default string?
--- @param fn fun(instruction: string)
local function rest_or_ask(inv, prompt, default, fn)
  if inv.rest ~= "" then
    return fn(inv.rest)
  end
  vim.ui.input({ prompt = prompt, default = default }, function(input)
    if input and vim.trim(input) ~= "" then
      fn(vim.trim(input))
    end
  end)
end

--- @param result table
--- @return string
local function who(result)
  return result.provider and ("%s/%s"):format(result.provider, result.model or "?") or (result.model or "?")
end

--- A server's Markdown as a notification's plain text: code spans lose their backticks, as in
--- the server's own messages and VS Code's notifications.
--- @param text string
--- @return string
local function plain(text)
  return (text:gsub("`([^`]*)`", "%1"))
end

--- One line about a phase result or a checked model: ✓/✗, who, latency, the problem.
--- @param item { ok: boolean?, phase: string?, provider: string?, model: string?, latencyMs: number|table?, error: table?, problem: table? }
--- @return string
local function summary(item)
  local problem = item.error or item.problem
  local parts = { ("%s %s%s"):format(item.ok and "✓" or "✗", item.phase and (item.phase .. " ") or "", who(item)) }
  local latency = type(item.latencyMs) == "table" and item.latencyMs.total or item.latencyMs
  if type(latency) == "number" then
    parts[#parts + 1] = ("%.1f s"):format(latency / 1000)
  end
  if problem and problem.message then
    parts[#parts + 1] = plain(problem.message)
  end
  return table.concat(parts, "  ")
end

--- Warn about the note of each result that is still ok (a plan or review cut at the output
--- limit, and the setting that raises it); a run's phases each.
--- @param result table a phase result, or a run's
local function report_notes(result)
  for _, r in ipairs(result.phases or { result }) do
    if r.ok and type(r.note) == "string" and r.note ~= "" then
      say("Phasewise: " .. plain(r.note), WARN)
    end
  end
end

--- Tell the user what failed and where its quick fixes are, or what a result that is still ok
--- has a note about; true when the phase succeeded.
--- @param result table a phase result
--- @param inv phasewise.Invocation
--- @param client vim.lsp.Client? the client whose edit the user may have cancelled
--- @return boolean
local function report_problem(result, inv, client)
  if result.ok then
    report_notes(result)
    return true
  end
  local problem = result.error or {}
  local declinable = problem.kind == "document-changed" or problem.kind == "cancelled"
  if client and declinable and require("phasewise.edits").declined(client.id) then
    return false -- the user cancelled the edit: already said when it happened
  end
  local message = plain(problem.message or ("the %s phase failed"):format(result.phase))
  if problem.kind == "cancelled" then
    return false -- the phase's progress end said "Phasewise: plan cancelled (…)"
  end
  local line = inv.range and inv.range[1] or 1
  message = ("%s\n(quick fixes: vim.lsp.buf.code_action() on line %d)"):format(message, line)
  say(message, ERROR)
  return false
end

--- @type table<string, fun(inv: phasewise.Invocation)>
local subcommands = {}

function subcommands.plan(inv)
  local client = attached(inv)
  if not client then
    return
  end
  rest_or_ask(inv, "Phasewise plan: ", nil, function(instruction)
    local arg = phase_arg(client, inv, instruction)
    scratch.open_plan(arg.uri, instruction)
    client_mod.execute(client, inv.buf, "phasewise.plan", arg, function(result)
      scratch.finish_plan(arg.uri, result)
      report_problem(result, inv)
    end)
  end)
end

function subcommands.code(inv)
  local client = attached(inv)
  if not client then
    return
  end
  local uri = vim.uri_from_bufnr(inv.buf)
  local plan = scratch.plan_for(uri)
  local incomplete = scratch.incomplete_plan(uri)
  if incomplete then
    -- one short line: a hit-enter prompt here would take the first key of the diff's question
    vim.notify(("Phasewise code: the plan is incomplete (%s), left out"):format(incomplete), WARN)
  end
  rest_or_ask(inv, "Phasewise code: ", plan and plan.instruction, function(instruction)
    local arg = phase_arg(client, inv, instruction)
    arg.plan = plan and plan.text
    client_mod.execute(client, inv.buf, "phasewise.code", arg, function(result)
      report_problem(result, inv, client)
    end)
  end)
end

function subcommands.review(inv)
  local client = attached(inv)
  if not client then
    return
  end
  local arg = phase_arg(client, inv, inv.rest ~= "" and inv.rest or nil)
  client_mod.execute(client, inv.buf, "phasewise.review", arg, function(result)
    if report_problem(result, inv) then
      local n = #(result.findings or {})
      say(("Phasewise review (%s): %d finding%s in the diagnostics"):format(who(result), n, n == 1 and "" or "s"))
    end
  end)
end

function subcommands.run(inv)
  local client = attached(inv)
  if not client then
    return
  end
  rest_or_ask(inv, "Phasewise run: ", nil, function(instruction)
    local arg = phase_arg(client, inv, instruction)
    client_mod.execute(client, inv.buf, "phasewise.run", arg, function(result)
      local phases = result.phases or {}
      if phases[1] and phases[1].phase == "plan" then
        scratch.finish_plan(arg.uri, phases[1])
      end
      local change = require("phasewise.edits").take_last(client.id)
      if report_problem(result, inv, client) then
        -- this message covers the one of the code phase's end: what the change did is said again
        local lines = vim.tbl_map(function(r)
          local line = summary(r)
          return (r.phase == "code" and r.applied and change) and (line .. "  " .. change) or line
        end, phases)
        say("Phasewise run\n" .. table.concat(lines, "\n"))
      end
    end)
  end)
end

function subcommands.status(inv)
  local client, uri = any_client(inv)
  if not client then
    return
  end
  client_mod.execute(client, inv.buf, "phasewise.status", { uri = uri }, function(status)
    local lines = { ("Phasewise %s"):format(status.version or "") }
    for _, issue in ipairs(status.settingsIssues or {}) do
      lines[#lines + 1] = ("settings: %s: %s"):format(issue.path, issue.message)
    end
    for _, view in ipairs(status.phases or {}) do
      lines[#lines + 1] = client_mod.describe_route(view)
      if view.problem then
        lines[#lines + 1] = "  ⚠ " .. plain(view.problem.message)
      end
    end
    say(table.concat(lines, "\n"), INFO)
  end)
end

function subcommands.verify(inv)
  local client, uri = any_client(inv)
  if not client then
    return
  end
  local arg = { uri = uri }
  if inv.rest ~= "" then
    arg.providers = vim.split(inv.rest, "%s+", { trimempty = true })
  end
  client_mod.execute(client, inv.buf, "phasewise.verify", arg, function(report)
    local lines = { "Phasewise verify" }
    for _, p in ipairs(report.providers or {}) do
      local key = p.keyEnv and (" key %s %s"):format(p.keyEnv, p.keyMasked or "missing") or ""
      lines[#lines + 1] = ("%s %s (%s)%s"):format(p.ok and "✓" or "✗", p.provider, p.protocol or "?", key)
      if p.problem then
        lines[#lines + 1] = "    " .. plain(p.problem.message)
      end
      for _, m in ipairs(p.models or {}) do
        lines[#lines + 1] = "  " .. summary(m)
      end
    end
    for _, check in ipairs(report.phases or {}) do
      lines[#lines + 1] = ("%s: %s%s"):format(check.phase, check.status, check.route and (" on " .. check.route) or "")
    end
    say(table.concat(lines, "\n"), report.ok and INFO or WARN)
  end)
end

--- `:Phasewise compare {phase} {model,model,…} [instruction]`
function subcommands.compare(inv)
  local client = attached(inv)
  if not client then
    return
  end
  local phase, models, rest = inv.rest:match("^(%S+)%s+(%S+)%s*(.-)$")
  if not phase then
    vim.notify("usage: :Phasewise compare {phase} {provider/model,provider/model,…} [instruction]", ERROR)
    return
  end
  local kind = phase
  for _, view in ipairs(M.phase_views(inv.buf)) do
    kind = view.phase == phase and view.kind or kind
  end
  local function compare(instruction)
    local arg = phase_arg(client, inv, instruction)
    arg.phase = phase
    arg.models = vim.split(models, ",", { trimempty = true })
    client_mod.execute(client, inv.buf, "phasewise.compare", arg, function(report)
      local lines = report.markdown and vim.split(report.markdown, "\n", { plain = true })
      if not lines then -- a server without the Markdown rendering: the rows themselves
        lines = { ("# Phasewise compare: %s"):format(phase) }
        for _, row in ipairs(report.rows or {}) do
          vim.list_extend(lines, { "", "## " .. summary(row.result), "" })
          vim.list_extend(lines, vim.split(row.result.text or "", "\n", { plain = true }))
        end
      end
      scratch.report(scratch.name("compare", arg.uri), lines)
    end)
  end
  if rest ~= "" or kind == "review" or kind == "qa" then -- a review or a check needs no instruction
    return compare(rest ~= "" and rest or nil)
  end
  vim.ui.input({ prompt = ("Phasewise compare %s: "):format(phase) }, function(input)
    if input == nil then
      return -- dismissed
    elseif vim.trim(input) == "" then
      vim.notify(("Phasewise compare: the %s phase needs an instruction (what it should do); nothing was run"):format(
        phase), WARN)
    else
      compare(vim.trim(input))
    end
  end)
end

--- `:Phasewise key [ENV]`: the setApiKey quick fix, for a key variable of the routes (the first
--- missing one by default; completed from them) or any other named by hand.
function subcommands.key(inv)
  local client = any_client(inv)
  if not client then
    return
  end
  local keys = M.route_keys(inv.buf)
  local default = keys[1]
  for _, key in ipairs(keys) do
    if not key.present then
      default = key
      break
    end
  end
  rest_or_ask(inv, "Phasewise key variable: ", default and default.env, function(env)
    local provider
    for _, key in ipairs(keys) do
      provider = provider or (key.env == env and key.provider) or nil
    end
    local arg = { env = env, provider = provider }
    local command = { title = "Phasewise: Set API Key…", command = "phasewise.setApiKey", arguments = { arg } }
    require("phasewise.actions").set_api_key(command, { client_id = client.id })
  end)
end

--- The server confirms each cancelled phase when it ends ("Phasewise: plan cancelled (…)").
function subcommands.cancel()
  local names = client_mod.cancel_all()
  if #names == 0 then
    vim.notify("Phasewise: nothing is running", INFO)
  else
    vim.notify(("Phasewise: cancelling %s …"):format(table.concat(names, ", ")), INFO)
  end
end

local NAMES = vim.tbl_keys(subcommands)
table.sort(NAMES)

--- The phases' views of `phasewise.status` for `buf` (the built-in three and the user's own, in
--- the server's order); {} when no server answers within `timeout_ms`.
--- @param buf integer
--- @param timeout_ms integer?
--- @return table[]
function M.phase_views(buf, timeout_ms)
  local own = client_mod.get(buf)
  local client = own or client_mod.get()
  if not (client and client_mod.offers(client, "phasewise.status")) then
    return {}
  end
  local arg = own and { uri = vim.uri_from_bufnr(buf) } or vim.empty_dict()
  local response = client_mod.request_sync(client, "workspace/executeCommand",
    { command = "phasewise.status", arguments = { arg } }, timeout_ms or 1000, buf)
  return response and response.result and response.result.phases or {}
end

--- The phases the server knows for `buf`, in its order, from `phasewise.status`.
--- @param buf integer
--- @param timeout_ms integer?
--- @return string[]
function M.phase_names(buf, timeout_ms)
  return vim.tbl_map(function(view)
    return view.phase
  end, M.phase_views(buf, timeout_ms))
end

--- The key variables the routes of `buf`'s phases use (fallbacks included), each once, in the
--- phases' order: `{env, provider, present}`.
--- @param buf integer
--- @return { env: string, provider: string?, present: boolean }[]
function M.route_keys(buf)
  local out, seen = {}, {}
  for _, view in ipairs(M.phase_views(buf)) do
    for _, route in ipairs({ view, unpack(view.fallbacks or {}) }) do
      for _, key in ipairs(route.keys or {}) do
        if type(key.env) == "string" and not seen[key.env] then
          seen[key.env] = true
          out[#out + 1] = { env = key.env, provider = route.provider, present = key.present == true }
        end
      end
    end
  end
  return out
end

--- Run `phasewise.phase` with `arg` ({phase, uri, range?, instruction?}) and show its answer by
--- what it holds: findings in the diagnostics, an edit applied (after the diff, like `code`), the
--- plan in its streaming buffer, any other text in a Markdown buffer `phasewise://<phase>/<file>`.
--- @param client vim.lsp.Client
--- @param inv phasewise.Invocation
--- @param arg table
local function execute_phase(client, inv, arg)
  local phase = arg.phase
  if phase == "plan" then
    scratch.open_plan(arg.uri, arg.instruction)
  end
  client_mod.execute(client, inv.buf, "phasewise.phase", arg, function(result)
    if phase == "plan" then
      scratch.finish_plan(arg.uri, result)
    end
    if not report_problem(result, inv, client) then
      return
    end
    if #(result.findings or {}) > 0 then
      local n = #result.findings
      say(("Phasewise %s (%s): %d finding%s in the diagnostics"):format(phase, who(result), n,
        n == 1 and "" or "s"))
    elseif result.applied ~= nil or #(result.edits or {}) > 0 then
      say(("Phasewise %s (%s): %s"):format(phase, who(result), result.applied and "applied" or "no change"))
    else
      if phase ~= "plan" then
        scratch.report_text(scratch.name(phase, arg.uri), result)
      end
      say(("Phasewise: %s ok (%s)"):format(phase, who(result)))
    end
  end)
end

--- `:[range]Phasewise {phase} [instruction]`: any phase by name through `phasewise.phase`, for the
--- phases of your own (`phasewise.phases.<name>`).
--- @param phase string
--- @param inv phasewise.Invocation
local function run_phase(phase, inv)
  local client = attached(inv)
  if not client then
    return
  end
  local function run(instruction)
    local arg = phase_arg(client, inv, instruction)
    arg.phase = phase
    execute_phase(client, inv, arg)
  end
  if inv.rest ~= "" then
    return run(inv.rest)
  end
  -- a review-kind phase needs no instruction: an empty answer runs it without one
  vim.ui.input({ prompt = ("Phasewise %s: "):format(phase) }, function(input)
    if input ~= nil then
      run(vim.trim(input) ~= "" and vim.trim(input) or nil)
    end
  end)
end

--- The server's phase code actions (`vim.lsp.commands["phasewise.phase"]`): run from
--- `vim.lsp.buf.code_action()`, their answer is shown as `:Phasewise {phase}` shows it (Neovim
--- alone would drop the reply of `workspace/executeCommand`).
--- @param command lsp.Command
--- @param ctx { client_id: integer, bufnr: integer? }
function M.code_action(command, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  local arg = command.arguments and command.arguments[1]
  if not (client and type(arg) == "table" and arg.phase and arg.uri) then
    return
  end
  local range = arg.range and { arg.range.start.line + 1, arg.range["end"].line + 1 } or nil
  execute_phase(client, { buf = ctx.bufnr or vim.uri_to_bufnr(arg.uri), rest = "", range = range }, arg)
end

--- @param cmd { args: string, range: integer, line1: integer, line2: integer }
function M.run(cmd)
  local sub, rest = cmd.args:match("^%s*(%S*)%s*(.-)%s*$")
  local inv = {
    buf = vim.api.nvim_get_current_buf(),
    rest = rest,
    range = cmd.range > 0 and { cmd.line1, cmd.line2 } or nil,
  }
  -- run from a plan's (or another scratch) buffer: the command is about the file it belongs to
  local source = scratch.source_of(inv.buf)
  if source then
    local buf = vim.fn.bufnr(source)
    local needs_document = not vim.tbl_contains({ "cancel", "status", "verify", "key" }, sub)
    if (buf == -1 or not vim.api.nvim_buf_is_loaded(buf)) and needs_document then
      vim.notify(("Phasewise: %s is not open: open it to run :Phasewise %s on it"):format(
        vim.fn.fnamemodify(source, ":~:."), sub), ERROR)
      return
    elseif buf ~= -1 and vim.api.nvim_buf_is_loaded(buf) then
      inv.buf, inv.range = buf, nil
    end
  end
  local handler = subcommands[sub]
  if handler then
    return handler(inv)
  end
  local phases = sub ~= "" and M.phase_names(inv.buf) or {}
  if vim.tbl_contains(phases, sub) then
    return run_phase(sub, inv)
  end
  local choices = vim.list_extend(vim.list_slice(NAMES), vim.tbl_filter(function(name)
    return not subcommands[name]
  end, phases))
  vim.notify(("usage: :[range]Phasewise {%s} [instruction]"):format(table.concat(choices, "|")), ERROR)
end

--- Completion of `:Phasewise`: subcommands and the server's phases (your own included, from
--- `phasewise.status`), then the phase of `compare` and the key variables of `key`.
--- @param arglead string
--- @param cmdline string
--- @return string[]
function M.complete(arglead, cmdline)
  local words = vim.split(cmdline:match("Phasewise!?%s+(.*)$") or "", "%s+")
  local candidates = {}
  if #words <= 1 then
    candidates = vim.list_slice(NAMES)
    for _, phase in ipairs(M.phase_names(vim.api.nvim_get_current_buf())) do
      if not subcommands[phase] then
        candidates[#candidates + 1] = phase
      end
    end
  elseif #words == 2 and words[1] == "key" then
    candidates = vim.tbl_map(function(key)
      return key.env
    end, M.route_keys(vim.api.nvim_get_current_buf()))
  elseif #words == 2 and words[1] == "compare" then
    candidates = M.phase_names(vim.api.nvim_get_current_buf())
    if #candidates == 0 then
      candidates = { "plan", "code", "review" }
    end
  end
  return vim.tbl_filter(function(name)
    return vim.startswith(name, arglead)
  end, candidates)
end

return M
