--- Client-side commands of the server's quick fixes (`vim.lsp.commands`). API keys go to the
--- server in memory (`phasewise/setKeys`) and stay in this Lua table for restarts: never on disk.
local client_mod = require("phasewise.client")

local M = {}

--- Keys typed in this session, by environment variable name.
--- @type table<string, string>
local keys = {}

--- Default secret prompt: `inputsecret()` does not echo and keeps no history (the built-in
--- `vim.ui.input` has no secret mode).
--- @param opts { prompt: string }
--- @param on_confirm fun(value: string?)
local function secret_input(opts, on_confirm)
  local ok, value = pcall(vim.fn.inputsecret, opts.prompt)
  on_confirm(ok and value or nil)
end

--- `phasewise.setApiKey {env, provider}`: ask for the key and hand it to the server.
--- @param command lsp.Command
--- @param ctx { client_id: integer }
function M.set_api_key(command, ctx)
  local arg = (command.arguments or {})[1] or {}
  local env = arg.env
  if type(env) ~= "string" or env == "" then
    vim.notify("Phasewise: this quick fix names no key variable", vim.log.levels.ERROR)
    return
  end
  local ask = require("phasewise").config.secret_input or secret_input
  local prompt = ("API key for %s (%s, kept in memory): "):format(arg.provider or "the provider", env)
  ask({ prompt = prompt }, function(value)
    value = value and vim.trim(value)
    if not value or value == "" then
      return
    end
    keys[env] = value
    local client = vim.lsp.get_client_by_id(ctx.client_id) or client_mod.get()
    if client then
      client_mod.notify(client, "phasewise/setKeys", { keys = { [env] = value } })
    end
    vim.notify(("Phasewise: %s set in memory for this session; run the phase again"):format(env))
  end)
end

--- `phasewise.openSettings {setting}`: say where the setting lives (the `settings` given to setup)
--- and what it holds now.
--- @param command lsp.Command
--- @param ctx { client_id: integer }
function M.open_settings(command, ctx)
  local setting = ((command.arguments or {})[1] or {}).setting or "phasewise"
  local path = vim.split(setting, ".", { plain = true })
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  local value = vim.tbl_get(client and client.settings or require("phasewise").config.settings, unpack(path))
  local nested = "…"
  for i = #path, 1, -1 do
    nested = ("{ %s = %s }"):format(path[i], nested)
  end
  vim.notify(("Phasewise: `%s` is set in require('phasewise').setup({ settings = %s }) (:help phasewise-settings)\ncurrent value: %s"):format(
    setting,
    nested,
    vim.inspect(value)
  ))
end

--- Give a (re)started server the keys typed earlier in this session.
--- @param client vim.lsp.Client
function M.resend_keys(client)
  if next(keys) then
    client_mod.notify(client, "phasewise/setKeys", { keys = keys })
  end
end

return M
