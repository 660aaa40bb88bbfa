-- Without setup(): plugin/phasewise.lua defines :Phasewise (completion, a helpful error when
-- no server is attached), :helptags builds the help's tags, and :checkhealth finds the server.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  vim.cmd.runtime("plugin/phasewise.lua") -- -u NONE loads no plugins by itself
  obs.command_exists = vim.fn.exists(":Phasewise") == 2
  obs.modules_loaded_at_startup = vim.tbl_filter(function(name)
    return vim.startswith(name, "phasewise")
  end, vim.tbl_keys(package.loaded))
  table.sort(obs.modules_loaded_at_startup)

  -- Neovim 0.11's own way: lsp/phasewise.lua gives vim.lsp.config its defaults
  local native = vim.lsp.config.phasewise
  obs.native = { cmd = native.cmd, stream_handler = type(native.handlers["phasewise/streamText"]) }

  obs.complete = {}
  for _, line in ipairs({ "Phasewise ", "Phasewise co", "'<,'>Phasewise pl", "Phasewise compare r" }) do
    obs.complete[line] = vim.fn.getcompletion(line, "cmdline")
  end

  vim.cmd.edit(vim.fn.fnameescape(T.input.file))
  vim.cmd("Phasewise plan anything")
  obs.unattached = T.observed.notifications[#T.observed.notifications]

  vim.cmd.helptags(vim.fn.fnameescape(T.input.plugin .. "/doc"))
  obs.help = {}
  for _, tag in ipairs(T.input.tags) do
    local ok, err = pcall(vim.cmd.help, tag)
    obs.help[tag] = ok and vim.bo.buftype == "help" and vim.api.nvim_get_current_line() or tostring(err)
    if ok then
      vim.cmd.helpclose()
    end
  end

  vim.cmd("checkhealth phasewise")
  obs.health = T.text(vim.api.nvim_get_current_buf())

  -- settings without the `phasewise` key: warned at setup and in :checkhealth
  vim.cmd("silent! tabonly")
  local before = #obs.notifications
  require("phasewise").setup({ settings = { phases = { plan = { model = "openai/gpt-5-mini" } }, retry = {} } })
  obs.misplaced = vim.list_slice(obs.notifications, before + 1)
  vim.cmd("checkhealth phasewise")
  obs.health_misplaced = T.text(vim.api.nvim_get_current_buf())
end)
