-- Progress you can see and stop. A plan rate-limited for a few seconds: its countdown reaches
-- vim.notify readably (the wait first) and thinned, and the statusline shows it; a second plan
-- reuses the plan buffer; then, routed to a provider whose limit lasts 30 s, the plan is cancelled
-- during its countdown with :Phasewise cancel, which says what it cancelled (and, when idle,
-- that nothing is running). The plan buffer keeps the last plan.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  local phasewise = require("phasewise")
  phasewise.setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local buf, client = T.open(T.input.file)

  vim.cmd("Phasewise cancel")
  obs.idle_cancel = obs.notifications[#obs.notifications].msg

  obs.reports, obs.countdown_statusline = {}, {}
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function(ev)
      local value = ev.data.params.value
      if value.kind == "report" and value.message and value.message:find("retrying in", 1, true) then
        table.insert(obs.reports, value.message)
        table.insert(obs.countdown_statusline, phasewise.statusline())
      end
    end,
  })

  --- True when a notification after the first `from` contains `substring`.
  local function notified_since(from, substring)
    for i = from + 1, #obs.notifications do
      if obs.notifications[i].msg:find(substring, 1, true) then
        return true
      end
    end
    return false
  end

  local function plan(line, until_msg)
    local from = #obs.notifications
    vim.cmd("Phasewise plan " .. line)
    T.wait(until_msg, function()
      return T.idle(client) and notified_since(from, until_msg)
    end, 30000)
    local plan_buf = T.find_buf("phasewise://plan/")
    return {
      buf = plan_buf,
      text = plan_buf ~= -1 and T.text(plan_buf) or nil,
      windows = plan_buf ~= -1 and #vim.fn.win_findbuf(plan_buf) or 0,
      plan_buffers = #vim.tbl_filter(function(b)
        return vim.startswith(vim.api.nvim_buf_get_name(b), "phasewise://plan/")
      end, vim.api.nvim_list_bufs()),
    }
  end

  obs.first = plan("rename load to read_file", "Phasewise: plan ok")
  obs.first_notifications = vim.deepcopy(obs.notifications)
  obs.statusline_after = phasewise.statusline()
  obs.second = plan("rename load to fetch", "Phasewise: plan ok")

  -- the plan now goes to a provider that asks for a 30 s wait: cancel it while it waits
  phasewise.setup({ settings = { phasewise = T.input.limited_settings } })
  local before = #obs.reports
  vim.cmd("Phasewise plan rename load to get")
  T.wait("the countdown", function()
    return #obs.reports > before
  end, 15000)
  obs.waiting_statusline = phasewise.statusline()
  vim.cmd("Phasewise cancel")
  obs.cancel_said = obs.notifications[#obs.notifications].msg
  T.wait("the cancelled plan", function()
    return T.idle(client) and T.notified("Phasewise: plan cancelled")
  end)
  local plan_buf = T.find_buf("phasewise://plan/")
  obs.after_cancel = { buf = plan_buf, text = plan_buf ~= -1 and T.text(plan_buf) or nil }
  obs.statusline_end = phasewise.statusline()
  vim.cmd("Phasewise cancel")
  obs.idle_cancel_after = obs.notifications[#obs.notifications].msg
  obs.buffer_unchanged = T.text(buf)
end)
