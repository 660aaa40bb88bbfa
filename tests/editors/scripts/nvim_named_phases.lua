-- :Phasewise {phase} runs any phase by name (phasewise.phase), with <Tab> completion of the
-- server's phases (your own included, from phasewise.status); an unknown name is a usage error.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  require("phasewise").setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local buf, client = T.open(T.input.file)

  obs.complete = {}
  for _, line in ipairs({ "Phasewise ", "Phasewise d", "Phasewise compare d", "Phasewise docs " }) do
    obs.complete[line] = vim.fn.getcompletion(line, "cmdline")
  end

  -- what the plugin sends, as the server receives it
  obs.sent = {}
  local client_mod = require("phasewise.client")
  local execute = client_mod.execute
  client_mod.execute = function(c, b, command, arg, on_result)
    if command ~= "phasewise.status" then
      table.insert(obs.sent, { command = command, arg = vim.deepcopy(arg) })
    end
    return execute(c, b, command, arg, on_result)
  end

  vim.cmd("4,6Phasewise docs document what load returns")
  T.wait("the docs phase", function()
    return T.idle(client) and T.find_buf("phasewise://docs/") ~= -1 and T.notified("Phasewise: docs ok")
  end, 30000)
  local docs = T.find_buf("phasewise://docs/")
  obs.docs = {
    name = vim.api.nvim_buf_get_name(docs),
    filetype = vim.bo[docs].filetype,
    shown = vim.fn.bufwinid(docs) ~= -1,
    text = T.text(docs),
  }
  obs.current_after = vim.api.nvim_get_current_buf() == buf

  -- no instruction on the command line: asked for with vim.ui.input
  vim.ui.input = function(opts, on_confirm)
    obs.prompt = opts.prompt
    on_confirm("list the missing tests")
  end
  local before = #obs.notifications
  vim.cmd("Phasewise docs")
  T.wait("the asked docs phase", function()
    return T.idle(client) and #obs.notifications > before and T.notified("Phasewise: docs ok")
      and #obs.sent == 2
  end, 30000)

  before = #obs.notifications
  vim.cmd("Phasewise nope")
  obs.unknown = vim.list_slice(obs.notifications, before + 1)

  -- the same phases from vim.lsp.buf.code_action(): the plugin shows what Neovim would drop
  local function code_action(kind, done)
    local count = #obs.sent
    vim.api.nvim_win_set_buf(0, buf)
    vim.api.nvim_win_set_cursor(0, { 4, 4 })
    vim.lsp.buf.code_action({
      filter = function(action)
        return action.kind == kind
      end,
      apply = true,
    })
    T.wait("the " .. kind .. " code action", function()
      return T.idle(client) and #obs.sent > count and done()
    end, 30000)
  end
  local docs_text = T.text(T.find_buf("phasewise://docs/"))
  code_action("source.phasewise.docs", function()
    return T.text(T.find_buf("phasewise://docs/")) ~= docs_text
  end)
  obs.docs_from_action = T.text(T.find_buf("phasewise://docs/"))
  code_action("source.phasewise.plan", function()
    return T.find_buf("phasewise://plan/") ~= -1 and T.text(T.find_buf("phasewise://plan/")) ~= ""
  end)
  obs.plan_from_action = T.text(T.find_buf("phasewise://plan/"))
  obs.plan_handed_to_code = require("phasewise.scratch").plan_for(vim.uri_from_bufnr(buf)) ~= nil
end)
