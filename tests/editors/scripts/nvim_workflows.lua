-- The other subcommands against the simulator: run (plan → code → review), review, compare,
-- verify and status, each rendered where the user looks for it.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

--- Run `:Phasewise {line}` and wait for its answer: the request done and `notified` seen.
local function phasewise(client, line, notified)
  local before = #T.observed.notifications
  vim.cmd("Phasewise " .. line)
  T.wait(":Phasewise " .. line, function()
    if not T.idle(client) then
      return false
    end
    for i = before + 1, #T.observed.notifications do
      if T.observed.notifications[i].msg:find(notified, 1, true) then
        return true
      end
    end
    return false
  end)
  return T.observed.notifications[#T.observed.notifications].msg
end

T.run(function()
  local obs = T.observed
  -- confirm_edits off: the run's edit lands without a question (nvim_edits.lua tests the question)
  require("phasewise").setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings }, confirm_edits = false })
  local buf, client = T.open(T.input.file)

  obs.run = phasewise(client, "run rename load to read_file", "Phasewise run")
  obs.text_after_run = T.text(buf)
  obs.plan_after_run = T.text(T.find_buf("phasewise://plan/"))

  obs.review = phasewise(client, "review", "Phasewise review (")
  obs.review_diagnostics = #vim.diagnostic.get(buf, { severity = { min = vim.diagnostic.severity.HINT } })
  -- the findings name their phase where they are read: the float, and the messages themselves
  local _, float = vim.diagnostic.open_float({ bufnr = buf, scope = "buffer" })
  obs.review_float = vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(float), 0, -1, false)
  vim.api.nvim_win_close(float, true)
  obs.review_messages = vim.tbl_map(function(d)
    return { message = d.message, lsp = d.user_data.lsp.message }
  end, vim.diagnostic.get(buf))
  obs.review_sources = vim.tbl_map(function(d)
    return d.source
  end, vim.diagnostic.get(buf))

  -- a range: only lines 4-6 go to both models
  vim.cmd("4,6Phasewise compare plan planner/claude-sim,coder/glm-sim explain this")
  T.wait("the compare report", function()
    return T.idle(client) and T.find_buf("phasewise://compare") ~= -1
  end)
  obs.compare = T.text(T.find_buf("phasewise://compare"))
  obs.compare_name = vim.api.nvim_buf_get_name(T.find_buf("phasewise://compare"))

  -- a review needs no instruction: not asked for one; a plan is, and an empty answer says why nothing ran
  obs.compare_asked = {}
  vim.ui.input = function(opts, on_confirm)
    table.insert(obs.compare_asked, opts.prompt)
    on_confirm("")
  end
  local compare_text = obs.compare
  vim.cmd("Phasewise compare review reviewer/gpt-sim,coder/glm-sim")
  T.wait("the review compare", function()
    return T.idle(client) and T.text(T.find_buf("phasewise://compare")) ~= compare_text
  end)
  obs.compare_review = T.text(T.find_buf("phasewise://compare"))
  vim.cmd("Phasewise compare plan planner/claude-sim,coder/glm-sim")
  obs.compare_empty = obs.notifications[#obs.notifications]

  obs.verify = phasewise(client, "verify", "Phasewise verify")
  obs.status = phasewise(client, "status", "Phasewise " .. T.input.version)
  vim.cmd.enew() -- a buffer the server is not attached to: status and verify still answer
  obs.status_unattached = phasewise(client, "status", "Phasewise " .. T.input.version)
  obs.verify_unattached = phasewise(client, "verify", "Phasewise verify")
end)
