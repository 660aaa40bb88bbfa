--- Scratch buffers: one plan per document (reused by every run of its plan), filled as
--- `phasewise/streamText` arrives, and reports (compare, the diff of an edit). Closing a plan's
--- window wipes it, so `:Phasewise code` no longer uses it. A phase that works in steps lists its
--- steps as they happen (`phasewise/step`): above the plan in the plan's buffer, and for any other
--- phase in its own buffer `phasewise://<phase>/<file>`, which its result then completes.
local M = {}

--- A buffer's head: the steps of a phase that works in steps, then the result's note (see
--- `head_of`); the plan's text or a phase's answer below it. `head` is the lines the head takes,
--- kept out of what `plan_for` hands on.
--- @class phasewise.View
--- @field buf integer
--- @field run_id string?
--- @field steps table[] the steps shown, as `phasewise/step` sent them ({step, of, tool, summary, ok, ms})
--- @field note string? the result's note
--- @field incomplete string? why the text is not a whole answer ("cancelled", "cut at the output limit")
--- @field head string[] the lines of the head now in the buffer

--- Plans by source document URI. `run_id` is the run whose text the buffer shows.
--- @type table<string, phasewise.View | { instruction: string? }>
local plans = {}

--- The buffers of phases other than the plan that work in steps, by run id.
--- @type table<string, phasewise.View>
local views = {}

--- The file each scratch buffer name is about (see `M.name`).
--- @type table<string, string>
local sources = {}

--- The height of a phase's steps buffer, below the file.
local STEPS_HEIGHT = 10

--- Where a head is highlighted.
local NOTE_NS = vim.api.nvim_create_namespace("phasewise.note")

--- The name of every scratch buffer: `phasewise://<what>/<file>`, `what` the phase (`plan`,
--- `code`, a phase of yours), `compare` or `edit`, and `file` the document's path as `:ls` shows it.
--- @param what string
--- @param path string the document's file name (or URI)
--- @return string
function M.name(what, path)
  if path:match("^%a[%w+.-]*://") then
    path = vim.uri_to_fname(path)
  end
  local name = ("phasewise://%s/%s"):format(what, vim.fn.fnamemodify(path, ":~:."))
  sources[name] = vim.fn.fnamemodify(path, ":p")
  return name
end

--- The file a scratch buffer is about (`M.name`'s `path`, absolute); nil for any other buffer.
--- @param buf integer
--- @return string?
function M.source_of(buf)
  return sources[vim.api.nvim_buf_get_name(buf)]
end

--- The scratch buffer named `name`, made if there is none.
--- @param name string
--- @param filetype string?
--- @return integer buf
local function scratch_buf(name, filetype)
  local buf = vim.iter(vim.api.nvim_list_bufs()):find(function(b)
    return vim.api.nvim_buf_get_name(b) == name
  end)
  if not buf then
    buf = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(buf, name)
    vim.bo[buf].bufhidden = "wipe"
    vim.bo[buf].filetype = filetype or "markdown"
  end
  return buf
end

--- Lines broken at word boundaries in `win` (a plan's prose, a diff's long lines), as `:setlocal`
--- would set them.
--- @param win integer
local function break_at_words(win)
  for _, option in ipairs({ "linebreak", "breakindent" }) do
    vim.api.nvim_set_option_value(option, true, { scope = "local", win = win })
  end
end

--- Show `lines` in the scratch buffer `name` in a tab page of its own, focused (a change's diff,
--- read in full before it is answered).
--- @param name string
--- @param lines string[]
--- @param filetype string?
--- @return integer buf, integer win
function M.tab(name, lines, filetype)
  local buf = scratch_buf(name, filetype)
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.cmd("tab sbuffer " .. buf)
  local win = vim.api.nvim_get_current_win()
  break_at_words(win)
  vim.api.nvim_win_set_cursor(win, { 1, 0 })
  return buf, win
end

--- A scratch buffer named `name`, shown in a split beside the current window (focus stays), or
--- below it `below` lines high (a list of steps: the file and a change's diff keep the width).
--- Markdown (a plan, a report's prose) wraps at word boundaries there, as `:setlocal` would set it.
--- @param name string
--- @param filetype string? default "markdown"
--- @param below integer?
--- @return integer buf
local function show(name, filetype, below)
  local buf = scratch_buf(name, filetype)
  if vim.fn.bufwinid(buf) == -1 then
    local place = below and { split = "below", win = 0, height = below } or { split = "right", win = 0 }
    local win = vim.api.nvim_open_win(buf, false, place)
    if vim.bo[buf].filetype == "markdown" then
      break_at_words(win)
    end
  end
  return buf
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

--- One step as a Markdown list item: `- 4/25 search_files "find_item": 2 matches · 3 ms`, a
--- failed one marked `✗` (the model was told why and goes on).
--- @param step table
--- @return string
function M.step_line(step)
  local at = type(step.of) == "number" and ("%d/%d"):format(step.step, step.of) or tostring(step.step)
  local ms = type(step.ms) == "number" and (" · %d ms"):format(math.floor(step.ms + 0.5)) or ""
  return ("- %s %s%s%s"):format(at, step.ok == false and "✗ " or "", tostring(step.summary), ms)
end

--- The head of `view`: its steps (a list, then a blank line), then its note (`note_lines`).
--- @param view phasewise.View
--- @return string[] lines, integer steps how many of the lines are steps
local function head_of(view)
  local lines = vim.tbl_map(M.step_line, view.steps or {})
  local steps = #lines
  if steps > 0 then
    lines[#lines + 1] = ""
  end
  vim.list_extend(lines, note_lines(view.incomplete and M.incomplete_mark(view.incomplete)))
  vim.list_extend(lines, note_lines(view.note))
  return lines, steps
end

--- The mark above a plan that is not a whole answer: what it is, and that `:Phasewise code` leaves
--- it out until the user takes the mark away.
--- @param why string "cancelled", "cut at the output limit", …
--- @return string
function M.incomplete_mark(why)
  return ("⚠ Incomplete plan (%s): `:Phasewise code` does not use it while this mark is here. "
    .. "Delete these lines to use it as it stands."):format(why)
end

--- Put `view`'s head in place of the head its buffer shows, the steps dimmed (a failed one as a
--- warning) and the note highlighted as a warning.
--- @param view phasewise.View
local function set_head(view)
  local lines, steps = head_of(view)
  local buf = view.buf
  vim.api.nvim_buf_set_lines(buf, 0, #(view.head or {}), false, lines)
  view.head = lines
  vim.api.nvim_buf_clear_namespace(buf, NOTE_NS, 0, -1)
  for i, step in ipairs(view.steps or {}) do
    vim.api.nvim_buf_set_extmark(buf, NOTE_NS, i - 1, 0, {
      end_row = i - 1, end_col = #lines[i], hl_group = step.ok == false and "DiagnosticWarn" or "Comment" })
  end
  local note = #lines - steps - (steps > 0 and 1 or 0) -- the mark's and note's lines, blank ones included
  if note > 0 then
    vim.api.nvim_buf_set_extmark(buf, NOTE_NS, #lines - note, 0, { end_row = #lines - 1, hl_group = "DiagnosticWarn" })
  end
end

--- Replace `view`'s whole text by its head over `text`.
--- @param view phasewise.View
--- @param text string
local function set_body(view, text)
  vim.api.nvim_buf_set_lines(view.buf, 0, -1, false, vim.split(text, "\n", { plain = true }))
  view.head = {}
  set_head(view)
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
  return M.name("plan", uri)
end

--- Show the plan buffer of `uri` before a plan starts streaming into it: the same buffer for
--- every run of the document's plan (a retry reuses it), its old text kept until the new text
--- arrives (a retry that fails or is cancelled leaves the last plan).
--- @param uri string
--- @param instruction string?
function M.open_plan(uri, instruction)
  local buf = show(plan_name(uri))
  local old = plans[uri]
  local kept = old and old.buf == buf -- the last run's text stays until the new one comes: its head too
  plans[uri] = { buf = buf, run_id = nil, instruction = instruction, steps = kept and old.steps or {},
                 note = kept and old.note or nil, incomplete = kept and old.incomplete or nil,
                 head = kept and old.head or {} }
end

--- The plan of `uri` bound to run `run_id`: the buffer shown for it, reused when it is waiting for
--- its first text or step (`open_plan`), opened again otherwise; emptied of the last run's steps.
--- @param uri string
--- @param run_id string
--- @return phasewise.View
local function bind_plan(uri, run_id)
  local plan = plans[uri]
  if not (plan and plan.run_id == nil and plan.buf and vim.api.nvim_buf_is_valid(plan.buf)) then
    M.open_plan(uri, plan and plan.instruction)
    plan = plans[uri]
  end
  plan.run_id, plan.note, plan.steps, plan.incomplete = run_id, nil, {}, nil
  return plan
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
  set_body(bind_plan(params.uri, params.runId), params.text)
end

--- Handler of `phasewise/step` {runId, phase, uri, step}: the step is listed as it ends, above the
--- plan in the plan's buffer, or in the phase's own buffer (opened beside, at its first step).
--- @param params { runId: string, phase: string, uri: string?, step: table }
function M.on_step(params)
  if type(params.step) ~= "table" or type(params.uri) ~= "string" then
    return
  end
  local view
  if params.phase == "plan" then
    view = plans[params.uri]
    if not (view and view.run_id == params.runId) then
      view = bind_plan(params.uri, params.runId)
      set_body(view, "")
    end
  else
    view = views[params.runId]
    if not view then
      view = { buf = show(M.name(params.phase, params.uri), nil, STEPS_HEIGHT), run_id = params.runId, steps = {}, head = {} }
      views[params.runId] = view
      set_body(view, ("_%s: working in steps…_"):format(params.phase))
    end
  end
  if not vim.api.nvim_buf_is_valid(view.buf) then
    return -- the user closed it: let it go
  end
  table.insert(view.steps, params.step)
  set_head(view)
  if params.phase ~= "plan" then
    for _, win in ipairs(vim.fn.win_findbuf(view.buf)) do -- the newest step in sight
      vim.api.nvim_win_set_cursor(win, { #view.steps, 0 })
    end
  end
end

--- What a phase's result says in its buffer, under its steps: the outcome, then its text.
--- @param result table a phase result
--- @return string
local function outcome_text(result)
  local route = result.provider and ("%s/%s"):format(result.provider, result.model) or "?"
  local said
  if not result.ok then
    said = ("_%s (%s) failed_: %s"):format(result.phase, route, (result.error or {}).message or "")
  elseif result.applied ~= nil or #(result.files or {}) > 0 then
    local n = #(result.files or {})
    said = ("_%s (%s): %s, %d file%s_"):format(result.phase, route,
      result.applied and "applied" or "not applied", n, n == 1 and "" or "s")
  elseif result.findings then
    local n = #result.findings
    said = ("_%s (%s): %d finding%s in the diagnostics_"):format(result.phase, route, n, n == 1 and "" or "s")
  else
    said = ("_%s (%s)_"):format(result.phase, route)
  end
  local text = type(result.text) == "string" and result.text or ""
  return text ~= "" and (said .. "\n\n" .. text) or said
end

--- A phase's result completes the buffer its steps went to (not the plan's: `finish_plan`); a run's
--- results each theirs. Nothing for a phase that did not work in steps.
--- @param result table a phase result, or a run's ({phases = {...}})
function M.finish_steps(result)
  if type(result) ~= "table" then
    return
  end
  for _, phase in ipairs(result.phases or {}) do
    M.finish_steps(phase)
  end
  local view = result.runId and views[result.runId]
  if not (view and view.run_id == result.runId and vim.api.nvim_buf_is_valid(view.buf)) then
    return
  end
  views[result.runId] = nil
  if #view.steps == 0 then
    view.steps = result.steps or {}
  end
  view.note = result.note
  set_body(view, outcome_text(result))
end

--- The final plan result replaces what streamed (it is the whole text), under its steps and its
--- note if it has one (cut at the output limit: what raises the limit); a failed plan's empty
--- buffer is closed.
--- @param uri string
--- @param result table a phase result
function M.finish_plan(uri, result)
  local plan = plans[uri]
  if not (plan and plan.buf and vim.api.nvim_buf_is_valid(plan.buf)) then
    return
  end
  if result.ok then
    if plan.run_id ~= result.runId or not plan.steps or #plan.steps == 0 then
      plan.steps = result.steps or {} -- the steps it reported, when their notifications did not come
    end
    plan.run_id, plan.note = result.runId, result.note
    plan.incomplete = result.incomplete and "cut at the output limit" or nil
    set_body(plan, result.text or "")
  elseif table.concat(vim.api.nvim_buf_get_lines(plan.buf, 0, -1, false), "\n") == "" then
    vim.api.nvim_buf_delete(plan.buf, { force = true })
  elseif plan.run_id ~= nil and plan.run_id == result.runId then
    -- this run's text came and stopped: marked, and left out of the code phase (an older plan
    -- that a failed retry left in place is whole and stays as it is)
    local kind = (result.error or {}).kind
    plan.incomplete = kind == "cancelled" and "cancelled" or ("failed: %s"):format(kind or "error")
    set_head(plan)
  end
end

--- Why the plan shown for `uri` is incomplete while its mark is there; nil when it is whole, the
--- user took the mark away, or there is no plan.
--- @param uri string
--- @return string?
function M.incomplete_plan(uri)
  local plan = plans[uri]
  if not (plan and plan.incomplete and plan.buf and vim.api.nvim_buf_is_valid(plan.buf)) then
    return nil
  end
  local head = plan.head or {}
  local lines = vim.api.nvim_buf_get_lines(plan.buf, 0, #head, false)
  return vim.deep_equal(lines, head) and plan.incomplete or nil
end

--- The plan shown for `uri`, as the user may have edited it, without the note above it (it is
--- the user's to read, not the code phase's; an edited note is kept); nil when there is none, or
--- when it is incomplete and still marked so (`incomplete_plan`).
--- @param uri string
--- @return { text: string, instruction: string? }?
function M.plan_for(uri)
  local plan = plans[uri]
  if not (plan and plan.buf and vim.api.nvim_buf_is_valid(plan.buf)) or M.incomplete_plan(uri) then
    return nil
  end
  local lines = vim.api.nvim_buf_get_lines(plan.buf, 0, -1, false)
  local head = plan.head or {}
  if #head > 0 and vim.deep_equal(vim.list_slice(lines, 1, #head), head) then
    lines = vim.list_slice(lines, #head + 1)
  end
  local text = table.concat(lines, "\n")
  if vim.trim(text) == "" then
    return nil
  end
  return { text = text, instruction = plan.instruction }
end

--- Show `lines` (Markdown unless `filetype` says otherwise) in the scratch buffer `name` (`M.name`).
--- @param name string
--- @param lines string[]
--- @param filetype string?
--- @return integer buf
function M.report(name, lines, filetype)
  local buf = show(name, filetype)
  vim.api.nvim_buf_clear_namespace(buf, NOTE_NS, 0, -1)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  return buf
end

--- Show a phase's text (a plan-kind phase of yours) in the Markdown report buffer `name`, under
--- its steps and the result's note.
--- @param name string
--- @param result table a phase result
--- @return integer buf
function M.report_text(name, result)
  local buf = M.report(name, {})
  set_body({ buf = buf, steps = result.steps or {}, note = result.note, head = {} }, result.text or "")
  return buf
end

return M
