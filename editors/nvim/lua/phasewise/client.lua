--- The Phasewise client of a buffer and the calls made to it, the same on Neovim 0.10 and 0.11
--- (0.11 made client functions methods; 0.10 has them as plain fields).
local M = {}

local methods = vim.fn.has("nvim-0.11") == 1

--- @param client vim.lsp.Client
--- @param method string
--- @param params table?
--- @param handler lsp.Handler?
--- @param buf integer?
--- @return boolean ok, integer? request_id
function M.request(client, method, params, handler, buf)
  if methods then
    return client:request(method, params, handler, buf)
  end
  return client.request(method, params, handler, buf)
end

--- @param client vim.lsp.Client
--- @return { err: lsp.ResponseError?, result: any }? response, string? err
function M.request_sync(client, method, params, timeout_ms, buf)
  if methods then
    return client:request_sync(method, params, timeout_ms, buf)
  end
  return client.request_sync(method, params, timeout_ms, buf)
end

--- @param client vim.lsp.Client
function M.notify(client, method, params)
  if methods then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

--- The Phasewise client attached to `buf`; with `buf` nil, any running one.
--- @param buf integer?
--- @return vim.lsp.Client?
function M.get(buf)
  return vim.lsp.get_clients({ bufnr = buf, name = "phasewise" })[1]
end

--- @param client vim.lsp.Client
--- @param command string
--- @return boolean
function M.offers(client, command)
  local offered = vim.tbl_get(client.server_capabilities or {}, "executeCommandProvider", "commands") or {}
  return vim.tbl_contains(offered, command)
end

--- Run a server command with its one argument object; failures of the request are reported here.
--- @param client vim.lsp.Client
--- @param buf integer?
--- @param command string e.g. "phasewise.plan"
--- @param arg table
--- @param on_result fun(result: any)
function M.execute(client, buf, command, arg, on_result)
  if not M.offers(client, command) then
    local version = client.server_info and client.server_info.version or "?"
    vim.notify(("Phasewise: this server (%s) does not offer %s"):format(version, command), vim.log.levels.WARN)
    return
  end
  if next(arg) == nil then
    arg = vim.empty_dict() -- an object, not the [] an empty Lua table encodes to
  end
  M.request(client, "workspace/executeCommand", { command = command, arguments = { arg } }, function(err, result)
    if err and err.code == vim.lsp.protocol.ErrorCodes.RequestCancelled then
      vim.notify(("Phasewise: %s cancelled"):format((command:gsub("^phasewise%.", ""))), vim.log.levels.WARN)
    elseif err then
      vim.notify(("Phasewise %s failed: %s"):format(command, err.message), vim.log.levels.ERROR)
    else
      -- a phase that worked in steps: its steps' buffer gets the outcome (the plan's: its caller)
      require("phasewise.scratch").finish_steps(result)
      on_result(result)
    end
  end, buf)
end

--- Cancel every running Phasewise phase: through its progress token (the server ends it with a
--- "cancelled" result), or, for a command whose progress has not begun yet, its request.
--- @return string[] what was asked to stop, e.g. { "plan (anthropic/claude-opus-4-5)" }
function M.cancel_all()
  local phasewise = require("phasewise")
  local names = {}
  for _, client in ipairs(vim.lsp.get_clients({ name = "phasewise" })) do
    local phases = phasewise.running(client.id)
    for _, phase in ipairs(phases) do
      M.notify(client, "window/workDoneProgress/cancel", { token = phase.token })
      names[#names + 1] = phasewise.describe_running(phase)
    end
    if #phases == 0 then
      for id, req in pairs(client.requests) do
        if req.type == "pending" and req.method == "workspace/executeCommand" then
          if methods then
            client:cancel_request(id)
          else
            client.cancel_request(id)
          end
          names[#names + 1] = "a command"
        end
      end
    end
  end
  return names
end

--- One line for a phase's route as `phasewise.status` resolves it (keys come masked from the server).
--- @param view table a `phases[]` entry of `phasewise.status`
--- @return string
function M.describe_route(view)
  if not view.provider then
    return ("%s: no route"):format(view.phase)
  end
  local keys = {}
  for _, key in ipairs(view.keys or {}) do
    keys[#keys + 1] = key.present and ("%s set (%s, %s)"):format(key.env, key.source, key.masked)
      or (key.env .. " missing")
  end
  local line = ("%s → %s/%s (%s, %s)"):format(view.phase, view.provider, view.model, view.protocol, view.baseUrl)
  if #keys > 0 then
    line = line .. "; key " .. table.concat(keys, ", ")
  end
  return line
end

return M
