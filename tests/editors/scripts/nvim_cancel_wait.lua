-- After a declined edit, a cancel is still said; a retry that waits for the rate limit counts down;
-- every window's statusline follows. The code phase's change is declined; the plan, rate-limited for
-- longer than the retry settings wait, fails; its retry (the quick fix's `phasewise.retry`) waits
-- with a countdown, seen in the notifications and in the statusline of the window that is not
-- current; `:Phasewise cancel` stops the wait and says so.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  local phasewise = require("phasewise")
  phasewise.setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  vim.o.laststatus = 2
  vim.o.statusline = "%{v:lua.require'phasewise'.statusline()}"
  local buf, client = T.open(T.input.file)
  vim.cmd.split() -- two windows on the file: the lower one is not current
  local other = vim.fn.win_getid(vim.fn.winnr("j"))
  vim.cmd.wincmd("k")
  local results = T.record_results()

  local function command(line)
    local before = #results
    vim.cmd("Phasewise " .. line)
    T.wait(line, function()
      return #results > before and T.idle(client)
    end, 30000)
    return results[#results]
  end

  T.on_edit_question(function(_, _, answer)
    answer("Cancel")
  end)
  local declined = command("code rename load to read_file")
  obs.declined = { ok = declined.ok, kind = declined.error and declined.error.kind }
  obs.after_decline = #obs.notifications

  local failed = command("plan rename load to get")
  obs.plan_failed = failed.error and failed.error.kind or vim.NIL

  -- the other window's statusline, as the plugin's redraw left it at each countdown report
  obs.other_rows = {}
  vim.api.nvim_create_autocmd("LspProgress", {
    callback = function(ev)
      local value = ev.data.params.value
      if value.kind == "report" and (value.message or ""):find("^retrying in") then
        local pos = vim.fn.win_screenpos(other)
        local row = pos[1] + vim.api.nvim_win_get_height(other) -- its statusline: the row under it
        table.insert(obs.other_rows, { message = value.message, row = T.screen()[row] })
      end
    end,
  })
  local retried
  require("phasewise.client").execute(client, buf, "phasewise.retry", { uri = vim.uri_from_bufnr(buf), phase = "plan" },
    function(result)
      retried = result
    end)
  T.wait("the countdown", function()
    return #obs.other_rows >= 2
  end, 15000)
  obs.statusline = phasewise.statusline()
  vim.cmd("Phasewise cancel")
  T.wait("the cancelled retry", function()
    return retried ~= nil and T.idle(client) and T.notified("Phasewise: plan cancelled")
  end)
  obs.retried = { ok = retried.ok, kind = retried.error and retried.error.kind }
  obs.said = vim.list_slice(obs.notifications, obs.after_decline + 1)
end)
