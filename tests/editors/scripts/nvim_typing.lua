-- The user types while a code phase runs: its change no longer applies (document-changed). What the
-- phase's end and its problem say must not stop the typing with a hit-enter prompt: while the user is
-- in Insert mode only what fits on the command line is said; the rest comes when Insert mode ends.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  require("phasewise").setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local buf, client = T.open(T.input.file)
  local results = T.record_results()

  -- Insert mode, as the user's typing puts Neovim in it (a script cannot hold a real one)
  local typing = false
  local get_mode = vim.api.nvim_get_mode
  vim.api.nvim_get_mode = function()
    return typing and { mode = "i", blocking = false } or get_mode()
  end
  local notify = vim.notify
  obs.while_typing = {}
  vim.notify = function(msg, level)
    if typing then
      table.insert(obs.while_typing, { msg = msg, width = vim.fn.strdisplaywidth(msg), echospace = vim.v.echospace })
    end
    notify(msg, level)
  end

  obs.asked = 0
  T.on_edit_question(function(_, _, answer)
    obs.asked = obs.asked + 1
    answer("Apply")
  end)
  vim.cmd("Phasewise code rename load to read_file")
  T.wait("the phase to begin", function()
    return T.notified("Phasewise code: coder/glm-sim …")
  end)
  typing = true
  vim.api.nvim_buf_set_lines(buf, -1, -1, false, { "# typed while the phase ran" })
  T.wait("the code phase", function()
    return #results > 0 and T.idle(client)
  end, 30000)
  obs.result = { asked = obs.asked, ok = results[1].ok, kind = results[1].error and results[1].error.kind or vim.NIL }
  obs.diagnostics = vim.tbl_map(function(d)
    return { code = d.code, severity = d.severity }
  end, vim.diagnostic.get(buf))
  local said = #obs.notifications
  typing = false
  vim.api.nvim_exec_autocmds("InsertLeave", { buffer = buf })
  T.wait("what was held", function()
    return #obs.notifications > said
  end)
  obs.after_typing = vim.list_slice(obs.notifications, said + 1)
end)
