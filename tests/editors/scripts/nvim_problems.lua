-- A missing key: :checkhealth shows it per phase; the failed phase is a vim.diagnostic entry
-- (source phasewise, code missing-credentials) whose quick fixes run through
-- vim.lsp.buf.code_action: openSettings names the setting, setApiKey hands the key to the server
-- in memory, and then the phase succeeds and its problem is cleared.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

--- The Phasewise problem diagnostic of `buf`, if any.
local function problem_of(buf)
  return vim.iter(vim.diagnostic.get(buf)):find(function(d)
    return d.source == "phasewise"
  end)
end

T.run(function()
  local obs = T.observed
  require("phasewise").setup({
    cmd = T.input.cmd,
    settings = { phasewise = T.input.settings },
    confirm_edits = false, -- the code phase's edit lands without a question (see nvim_edits.lua)
    secret_input = function(opts, on_confirm)
      obs.secret_prompt = opts.prompt
      on_confirm(T.input.late_key)
    end,
  })
  local buf, client = T.open(T.input.file)

  vim.cmd("checkhealth phasewise")
  obs.health = T.text(vim.api.nvim_get_current_buf())
  vim.cmd("silent! tabonly")
  vim.api.nvim_set_current_buf(buf)

  vim.cmd("Phasewise code add a docstring")
  local problem
  T.wait("the missing-credentials diagnostic", function()
    problem = problem_of(buf)
    return problem ~= nil and T.idle(client)
  end)
  obs.problem = {
    source = problem.source,
    code = problem.code,
    message = problem.message,
    lnum = problem.lnum,
    severity = problem.severity,
    data = problem.user_data.lsp.data,
  }
  obs.text_after_failure = T.text(buf)

  -- the quick fixes, as `vim.lsp.buf.code_action()` offers and applies them at the problem; the
  -- filter leaves one, so it is applied without a menu
  obs.actions = {}
  local function apply(command, argument)
    vim.lsp.buf.code_action({
      apply = true,
      filter = function(action)
        obs.actions[action.title] = true
        local cmd = type(action.command) == "table" and action.command or {}
        local arg = (cmd.arguments or {})[1] or {}
        return cmd.command == command and (argument == nil or vim.deep_equal(arg, argument))
      end,
    })
  end
  local setting = obs.problem.data.setting or "phasewise.phases.code"
  vim.api.nvim_win_set_cursor(0, { problem.lnum + 1, 0 })
  apply("phasewise.openSettings", { setting = setting })
  T.wait("openSettings", function()
    return T.notified("is set in require('phasewise').setup(")
  end)
  apply("phasewise.setApiKey")
  T.wait("setApiKey", function()
    return T.notified("set in memory")
  end)

  vim.cmd("Phasewise code add a docstring")
  T.wait("the code phase again", function()
    local ends = vim.tbl_filter(function(n)
      return vim.startswith(n.msg, "Phasewise: code ")
    end, obs.notifications)
    return T.idle(client) and #ends == 2
  end)
  obs.after_key = { ok = T.notified("Phasewise: code ok"), problem = problem_of(buf) ~= nil }

  -- :Phasewise key completes the routes' key variables and offers the first missing one
  obs.key_complete = vim.fn.getcompletion("Phasewise key ", "cmdline")
  vim.ui.input = function(opts, on_confirm)
    obs.key_asked = { prompt = opts.prompt, default = opts.default }
    on_confirm(nil)
  end
  vim.cmd("Phasewise key")
end)
