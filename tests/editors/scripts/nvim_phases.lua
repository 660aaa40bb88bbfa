-- :Phasewise plan streams into a Markdown scratch buffer, then :Phasewise code (instruction asked
-- with vim.ui.input, the plan handed over) lands its edit in the buffer; progress is observed.
-- Then the plan, re-routed with an output limit it cannot fit in, is cut: the plan buffer and a
-- warning say so, and the note stays out of what the next code phase is handed.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

--- The wrapping options window `win` has for the buffer it shows.
--- @param win integer
local function window_options(win)
  return { linebreak = vim.wo[win].linebreak, breakindent = vim.wo[win].breakindent }
end

T.run(function()
  local phasewise = require("phasewise")
  phasewise.setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local buf, client = T.open(T.input.file)
  local obs = T.observed
  obs.server_version = client.server_info and client.server_info.version

  obs.progress, obs.statusline = {}, {}
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function(ev)
      local value = ev.data.params.value
      table.insert(obs.progress, { kind = value.kind, title = value.title })
      if value.kind == "begin" then
        table.insert(obs.statusline, phasewise.statusline())
      end
    end,
  })

  -- count the streamed chunks and what the plan buffer held while the request was still running
  local scratch = require("phasewise.scratch")
  local on_stream = scratch.on_stream
  obs.stream = {}
  scratch.on_stream = function(params)
    on_stream(params)
    local plan_buf = T.find_buf("phasewise://plan/")
    obs.streamed = plan_buf ~= -1 and T.text(plan_buf) or nil
    table.insert(obs.stream, {
      phase = params.phase,
      uri_matches = params.uri == vim.uri_from_bufnr(buf),
      plan_buffer_chars = plan_buf ~= -1 and #T.text(plan_buf) or -1,
      running = not T.idle(client),
    })
  end

  vim.cmd("Phasewise plan rename load to read_file")
  T.wait("the plan", function()
    return T.idle(client) and T.notified("Phasewise plan: ")
  end)
  local plan_buf = T.find_buf("phasewise://plan/")
  assert(plan_buf ~= -1, "no plan buffer")
  obs.plan = {
    name = vim.api.nvim_buf_get_name(plan_buf),
    filetype = vim.bo[plan_buf].filetype,
    buftype = vim.bo[plan_buf].buftype,
    shown = vim.fn.bufwinid(plan_buf) ~= -1,
    text = T.text(plan_buf),
  }
  obs.current_after_plan = vim.api.nvim_get_current_buf() == buf
  obs.statusline_after = phasewise.statusline()

  -- no instruction on the command line: asked for, offering the plan's instruction
  vim.ui.input = function(opts, on_confirm)
    obs.prompt = { prompt = opts.prompt, default = opts.default }
    on_confirm(opts.default)
  end
  -- the edit is shown as a diff and confirmed before it lands
  T.on_edit_question(function(items, opts, on_choice)
    local diff = T.find_buf("phasewise://edit")
    obs.confirm = obs.confirm or { items = items, prompt = opts.prompt, diff = diff ~= -1 and T.text(diff) or "" }
    on_choice("Apply")
  end)
  vim.cmd("Phasewise code")
  T.wait("the code edit", function()
    return T.idle(client) and T.text(buf):find("def read_file(", 1, true) ~= nil
  end)
  obs.text_after_code = T.text(buf)
  obs.modified = vim.bo[buf].modified
  obs.diagnostics = vim.tbl_map(function(d)
    return { source = d.source, code = d.code }
  end, vim.diagnostic.get(buf))

  -- the plan cut at its output limit (its chunks are not counted: `stream` is the first plan's)
  scratch.on_stream = on_stream
  local finish_plan = scratch.finish_plan
  scratch.finish_plan = function(uri, result)
    obs.cut_result = obs.cut_result or { ok = result.ok, incomplete = result.incomplete, note = result.note, text = result.text }
    finish_plan(uri, result)
  end
  phasewise.setup({ settings = { phasewise = T.input.cut_settings } })
  local from = #obs.notifications
  vim.cmd("Phasewise plan rename load to read_file")
  T.wait("the cut plan", function()
    return T.idle(client) and T.notified("the plan ends where the answer was cut off")
  end)
  plan_buf = T.find_buf("phasewise://plan/")
  vim.cmd.redraw() -- what Neovim draws once the command is idle
  obs.cut = {
    lines = vim.api.nvim_buf_get_lines(plan_buf, 0, -1, false),
    plan_window = T.window_rows(vim.fn.bufwinid(plan_buf)),
    plan_window_options = window_options(vim.fn.bufwinid(plan_buf)),
    other_window_options = window_options(vim.fn.bufwinid(buf)),
    highlights = vim.tbl_map(function(mark)
      return { row = mark[2], end_row = mark[4].end_row, hl_group = mark[4].hl_group }
    end, vim.api.nvim_buf_get_extmarks(plan_buf, -1, 0, -1, { details = true })),
    handed = (scratch.plan_for(vim.uri_from_bufnr(buf)) or {}).text or vim.NIL,
    notifications = vim.list_slice(obs.notifications, from + 1),
  }

  -- a plan cancelled while it streams: its text stays, marked incomplete
  phasewise.setup({ settings = { phasewise = T.input.settings } })
  local cancelling = false
  scratch.on_stream = function(params)
    on_stream(params)
    if not cancelling then
      cancelling = true
      vim.schedule(function()
        vim.cmd("Phasewise cancel")
      end)
    end
  end
  from = #obs.notifications
  vim.cmd("Phasewise plan rename load to fetch")
  T.wait("the cancelled plan", function()
    return T.idle(client) and T.notified("Phasewise: plan cancelled")
  end)
  plan_buf = T.find_buf("phasewise://plan/")
  vim.cmd.redraw()
  obs.cancelled_plan = {
    lines = vim.api.nvim_buf_get_lines(plan_buf, 0, -1, false),
    plan_window = T.window_rows(vim.fn.bufwinid(plan_buf)),
    handed = (scratch.plan_for(vim.uri_from_bufnr(buf)) or {}).text or vim.NIL,
  }

  -- :Phasewise code typed in the plan's window: about the file the plan belongs to, without the plan
  local results = T.record_results()
  vim.api.nvim_set_current_win(vim.fn.bufwinid(plan_buf))
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, vim.split(T.input.doc, "\n", { plain = true }))
  vim.cmd("Phasewise code rename load to fetch")
  T.wait("the code phase from the plan's window", function()
    return #results > 0 and T.idle(client)
  end)
  obs.from_plan_window = {
    ok = results[1].ok,
    said = vim.list_slice(obs.notifications, from + 1),
    text = T.text(buf),
  }
end)
