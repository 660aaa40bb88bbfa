--- Scratch buffers: one plan per document (reused by every run of its plan), filled as
--- `phasewise/streamText` arrives, and reports (compare, the diff of an edit). Closing a plan's
--- window wipes it, so `:Phasewise code` no longer uses it.
local M = {}

--- Plans by source document URI. `run_id` is the run whose text the buffer shows; `note` the
--- lines of the result's note above it (see `note_lines`), kept out of what `plan_for` hands on.
--- @type table<string, { buf: integer, run_id: string?, instruction: string?, note: string[]? }>
local plans = {}

--- Where a note is highlighted.
local NOTE_NS = vim.api.nvim_create_namespace("phasewise.note")

--- A scratch buffer named `name`, shown in a split beside the current window (focus stays).
--- Markdown (a plan, a report's prose) wraps at word boundaries there, as `:setlocal` would set it.
--- @param name string
--- @param filetype string? default "markdown"
--- @return integer buf
local function show(name, filetype)
  local buf = vim.iter(vim.api.nvim_list_bufs()):find(function(b)
    return vim.api.nvim_buf_get_name(b) == name
  end)
  if not buf then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, name)
    vim.bo[buf].bufhidden = "wipe"
    vim.bo[buf].filetype = filetype or "markdown"
  end
  if vim.fn.bufwinid(buf) == -1 then
    local win = vim.api.nvim_open_win(buf, false, { split = "right", win = 0 })
    if vim.bo[buf].filetype == "markdown" then
      for _, option in ipairs({ "linebreak", "breakindent" }) do
        vim.api.nvim_set_option_value(option, true, { scope = "local", win = win })
      end
    end
  end
  return buf
end

--- @param buf integer
--- @param text string
local function set_text(buf, text)
  vim.api.nvim_buf_clear_namespace(buf, NOTE_NS, 0, -1)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, vim.split(text, "\n", { plain = true }))
end

--- The lines a result's note takes above its text, as the server's plan document has it: a
--- Markdown quote, then a blank line; none without a note (a plan cut at the output limit has one).
--- @param note string?
--- @return string[]
local function note_lines(note)
  if type(note) ~= "string" or vim.trim(note) == "" then
    return {}
  end
  local lines = vim.tbl_map(function(line)
    return "> " .. line
  end, vim.split(vim.trim(note), "\n", { plain = true }))
  lines[#lines + 1] = ""
  return lines
end

--- Replace `buf`'s text by `note` (as `note_lines`) over `text`, the note highlighted as a warning.
--- @param buf integer
--- @param note string?
--- @param text string
--- @return string[] note the note's lines
local function set_noted(buf, note, text)
  local head = note_lines(note)
  set_text(buf, text)
  vim.api.nvim_buf_set_lines(buf, 0, 0, false, head)
  if #head > 0 then
    vim.api.nvim_buf_set_extmark(buf, NOTE_NS, 0, 0, { end_row = #head - 1, hl_group = "DiagnosticWarn" })
  end
  return head
end

--- Append streamed text where the buffer ends, and follow it in the windows that show it.
--- @param buf integer
--- @param text string
local function append(buf, text)
  local last = vim.api.nvim_buf_line_count(buf) - 1
  local col = #vim.api.nvim_buf_get_lines(buf, last, last + 1, true)[1]
  vim.api.nvim_buf_set_text(buf, last, col, last, col, vim.split(text, "\n", { plain = true }))
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    vim.api.nvim_win_set_cursor(win, { vim.api.nvim_buf_line_count(buf), 0 })
  end
end

--- @param uri string
local function plan_name(uri)
  return "phasewise://plan/" .. vim.uri_to_fname(uri)
end

--- Show the plan buffer of `uri` before a plan starts streaming into it: the same buffer for
--- every run of the document's plan (a retry reuses it), its old text kept until the new text
--- arrives (a retry that fails or is cancelled leaves the last plan).
--- @param uri string
--- @param instruction string?
function M.open_plan(uri, instruction)
  local buf = show(plan_name(uri))
  plans[uri] = { buf = buf, run_id = nil, instruction = instruction }
end

--- Handler of `phasewise/streamText` {runId, phase, uri, text}: plan text goes to the plan buffer,
--- also for runs started elsewhere (a retry quick fix, `:Phasewise run`).
--- @param params { runId: string, phase: string, uri: string?, text: string }
function M.on_stream(params)
  if params.phase ~= "plan" or not params.uri then
    return
  end
  local plan = plans[params.uri]
  if plan and plan.run_id == params.runId then
    if vim.api.nvim_buf_is_valid(plan.buf) then -- else the user closed it: let it go
      append(plan.buf, params.text)
    end
    return
  end
  if not (plan and plan.run_id == nil and vim.api.nvim_buf_is_valid(plan.buf)) then
    M.open_plan(params.uri, plan and plan.instruction)
    plan = plans[params.uri]
  end
  plan.run_id, plan.note = params.runId, nil
  set_text(plan.buf, params.text)
end

--- The final plan result replaces what streamed (it is the whole text), under its note if it has
--- one (cut at the output limit: what raises the limit); a failed plan's empty buffer is closed.
--- @param uri string
--- @param result table a phase result
function M.finish_plan(uri, result)
  local plan = plans[uri]
  if not (plan and vim.api.nvim_buf_is_valid(plan.buf)) then
    return
  end
  if result.ok then
    plan.run_id = result.runId
    plan.note = set_noted(plan.buf, result.note, result.text or "")
  elseif table.concat(vim.api.nvim_buf_get_lines(plan.buf, 0, -1, false), "\n") == "" then
    vim.api.nvim_buf_delete(plan.buf, { force = true })
  end
end

--- The plan shown for `uri`, as the user may have edited it, without the note above it (it is
--- the user's to read, not the code phase's; an edited note is kept); nil when there is none.
--- @param uri string
--- @return { text: string, instruction: string? }?
function M.plan_for(uri)
  local plan = plans[uri]
  if not (plan and vim.api.nvim_buf_is_valid(plan.buf)) then
    return nil
  end
  local lines = vim.api.nvim_buf_get_lines(plan.buf, 0, -1, false)
  local note = plan.note or {}
  if #note > 0 and vim.deep_equal(vim.list_slice(lines, 1, #note), note) then
    lines = vim.list_slice(lines, #note + 1)
  end
  local text = table.concat(lines, "\n")
  if vim.trim(text) == "" then
    return nil
  end
  return { text = text, instruction = plan.instruction }
end

--- Show `lines` (Markdown unless `filetype` says otherwise) in the report buffer `name`.
--- @param name string
--- @param lines string[]
--- @param filetype string?
--- @return integer buf
function M.report(name, lines, filetype)
  local buf = show("phasewise://" .. name, filetype)
  vim.api.nvim_buf_clear_namespace(buf, NOTE_NS, 0, -1)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  return buf
end

--- Show a phase's text (a plan-kind phase of yours) in the Markdown report buffer `name`, under
--- the result's note if it has one.
--- @param name string
--- @param result table a phase result
--- @return integer buf
function M.report_text(name, result)
  local buf = M.report(name, {})
  set_noted(buf, result.note, result.text or "")
  return buf
end

return M
