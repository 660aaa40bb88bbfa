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

--- @param cmd string[]|function
local function check_server(cmd)
  vim.health.start("Server")
  if type(cmd) ~= "table" then
    vim.health.info("cmd is a function: not checked")
    return
  end
  if vim.fn.executable(cmd[1]) ~= 1 then
    vim.health.error(
      ("`%s` is not executable (cmd = %s)"):format(cmd[1], vim.inspect(cmd)),
      { "Install the server (`pipx install phasewise`, or `pip install -e .` in a clone)", "or set `cmd` in setup()" }
    )
    return
  end
  local argv = version_cmd(cmd)
  local ok, done = pcall(function()
    return vim.system(argv, { text = true }):wait(15000)
  end)
  local version = ok and done.code == 0 and done.stdout:match("phasewise%s+(%S+)")
  if version then
    vim.health.ok(("server %s (%s)"):format(version, table.concat(argv, " ")))
  else
    local why = ok and vim.trim((done.stderr or "") .. (done.stdout or "")) or tostring(done)
    vim.health.error(("`%s` failed: %s"):format(table.concat(argv, " "), why))
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
  check_server(client and client.config.cmd or phasewise.config.cmd)
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
