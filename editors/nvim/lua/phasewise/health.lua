--- `:checkhealth phasewise`: the server and its version, the settings, and every phase's route
--- with whether its key is present (masked by the server; no key is ever shown).
local client_mod = require("phasewise.client")

local M = {}

--- `cmd` with `serve` replaced by `--version`.
--- @param cmd string[]
--- @return string[]
local function version_cmd(cmd)
  local argv = vim.deepcopy(cmd)
  if argv[#argv] == "serve" then
    argv[#argv] = nil
  end
  argv[#argv + 1] = "--version"
  return argv
end

--- How to install a missing server, for `vim.health.error`'s advice.
--- @param cmd string[]
--- @return string[]
local function install_advice(cmd)
  local install = require("phasewise.install")
  local advice = {}
  if install.repo_root() then
    advice[#advice + 1] = ("Install it with the plugin's build step: `:Lazy build phasewise` with lazy.nvim, or "
      .. "`:lua require('phasewise.install').build()` (a virtual environment in %s)"):format(install.venv())
  end
  advice[#advice + 1] = "or install it from a clone or a wheel: `uv tool install .` / `pipx install .` in the "
    .. "repository (phasewise is not on PyPI yet; see docs/install.md)"
  advice[#advice + 1] = ("or set `cmd` in setup() to where it is (now %s)"):format(vim.inspect(cmd))
  return advice
end

--- @param cmd string[]|function
local function check_server(cmd)
  vim.health.start("Server")
  if type(cmd) ~= "table" then
    vim.health.info("cmd is a function: not checked")
    return
  end
  if vim.fn.executable(cmd[1]) ~= 1 then
    vim.health.error(("the server `%s` is not installed or not on PATH"):format(cmd[1]), install_advice(cmd))
    return
  end
  local argv = version_cmd(cmd)
  local ok, done = pcall(function()
    return vim.system(argv, { text = true }):wait(15000)
  end)
  local version = ok and done.code == 0 and done.stdout:match("phasewise%s+(%S+)")
  if not version then
    local why = ok and vim.trim((done.stderr or "") .. (done.stdout or "")) or tostring(done)
    vim.health.error(("`%s` failed: %s"):format(table.concat(argv, " "), why), install_advice(cmd))
    return
  end
  vim.health.ok(("server %s (%s)"):format(version, table.concat(argv, " ")))
  if cmd[1] == require("phasewise.install").server() then
    vim.health.info("installed by the plugin's build step in " .. require("phasewise.install").venv())
  end
  local plugin = require("phasewise").version
  if version ~= plugin then
    vim.health.warn(("the server is %s, the plugin %s"):format(version, plugin), {
      "Install the server that goes with the plugin: `:Lazy build phasewise`, or the same checkout's "
        .. "`uv tool install .` / `pipx install .`",
    })
  end
end

--- @param client vim.lsp.Client
local function check_routes(client)
  vim.health.start("Settings and routes")
  local buf = next(client.attached_buffers)
  local arg = buf and { uri = vim.uri_from_bufnr(buf) } or {}
  local response, err = client_mod.request_sync(
    client,
    "workspace/executeCommand",
    { command = "phasewise.status", arguments = { arg } },
    10000,
    buf
  )
  local status = response and response.result
  if not status then
    local why = err or (response and response.err and response.err.message) or "no answer"
    vim.health.error("phasewise.status failed: " .. why)
    return
  end
  if #(status.settingsIssues or {}) == 0 then
    vim.health.ok("settings valid")
  end
  for _, issue in ipairs(status.settingsIssues or {}) do
    vim.health.error(("settings: `%s`: %s"):format(issue.path, issue.message))
  end
  for _, view in ipairs(status.phases or {}) do
    local line = client_mod.describe_route(view)
    if view.problem then
      vim.health.warn(line, { view.problem.message })
    else
      vim.health.ok(line)
    end
  end
  if #(status.keysInMemory or {}) > 0 then
    vim.health.info("keys set in this session (memory): " .. table.concat(status.keysInMemory, ", "))
  end
  -- provider health from the run record: a route that failed most of its recent requests
  local health = status.health or {}
  vim.health.start("Provider health (run record)")
  if #(health.flagged or {}) == 0 then
    vim.health.ok(("no route failing: %d route(s) in the last runs"):format(#(health.routes or {})))
  end
  for _, flag in ipairs(health.flagged or {}) do
    local fallbacks = #(flag.fallbacks or {}) > 0 and ("fallbacks: " .. table.concat(flag.fallbacks, ", "))
      or "no fallback configured"
    vim.health.warn(
      ("%s failed %d of its last %d requests"):format(flag.route, flag.recentFailed or 0, flag.recentRequests or 0),
      { fallbacks }
    )
  end
end

function M.check()
  vim.health.start("Neovim")
  if vim.fn.has("nvim-0.10") == 1 then
    vim.health.ok(("Neovim %s"):format(tostring(vim.version())))
  else
    vim.health.error("Phasewise needs Neovim 0.10 or later")
  end
  local phasewise = require("phasewise")
  local client = client_mod.get()
  vim.health.start("Setup")
  local settings = client and client.settings or phasewise.config.settings
  local warning = phasewise.misplaced_warning(settings)
  if warning then
    vim.health.warn((warning:gsub("^Phasewise: ", "")), { "Move them under the `phasewise` key, see :help phasewise-settings" })
  else
    vim.health.ok("settings are under the `phasewise` key")
  end
  vim.health.info(phasewise.confirms_edits(settings) and "edits are shown as a diff and confirmed before they land (confirm_edits)"
    or "edits are applied without asking, unless the server asks for confirmation (confirm_edits = false)")
  check_server(client and client.config.cmd or phasewise.server_cmd())
  if client then
    check_routes(client)
  else
    vim.health.start("Settings and routes")
    vim.health.warn("no Phasewise server is running, so the routes were not resolved", {
      "Call require('phasewise').setup({...}), open a file it attaches to, then run :checkhealth phasewise again",
    })
  end
end

return M
