--- Phasewise for Neovim: registers the language server, the `:Phasewise` command, the client-side
--- commands of its quick fixes, and a progress statusline. The work lives in lazily required
--- modules (`phasewise.command`, `phasewise.scratch`, `phasewise.actions`). See `:help phasewise`.
local M = {}

--- The plugin's version: the server's too (`server/phasewise/__init__.py`; scripts/set_version.py
--- writes both), so `:checkhealth phasewise` can say when the server is older or newer.
M.version = "0.1.0"

--- @class phasewise.Config
--- @field cmd string[] How to start the server over stdio.
--- @field filetypes string[]? Filetypes to attach to; `nil` attaches to every file buffer.
--- @field root_markers string[] Files that mark a project root (the server's workspace folder).
--- @field settings { phasewise: table? } Answers `workspace/configuration`: the contract's `phasewise` section, under that key.
--- @field secret_input fun(opts: { prompt: string }, on_confirm: fun(value: string?))? Asks for an API key without echoing it (default: `inputsecret()`).
--- @field confirm_edits boolean? Show the server's edits as a diff and ask before applying them (default: the server's `phases.code.confirm`, on unless set false).

--- @type phasewise.Config
M.config = {
  cmd = { "phasewise", "serve" },
  filetypes = nil,
  root_markers = { ".git" },
  settings = {},
}

--- @class phasewise.SetupOpts: phasewise.Config
--- @field cmd string[]?
--- @field root_markers string[]?
--- @field settings { phasewise: table? }?
--- @field confirm_edits boolean?

--- A phase (or compare) the server reports progress for.
--- @class phasewise.Running
--- @field client_id integer
--- @field token integer|string
--- @field title string e.g. "Phasewise plan: anthropic/claude-opus-4-5"
--- @field wait string? the countdown while it waits to retry ("12 s"), for `statusline()`
--- @field notified_at integer? when its last countdown was notified (`vim.uv.now()`)

--- The running phases by "client_id:token".
--- @type table<string, phasewise.Running>
local running = {}

--- Countdown reports ("retrying in 12 s") come once a second: notify at most one per this many ms.
M.countdown_notify_ms = 5000
local registered = false

--- The client-side commands of the server's quick fixes, declared to the server (an
--- `experimental` capability) so that it offers them only to clients that have them.
M.client_commands = { "phasewise.setApiKey", "phasewise.openSettings" }

--- How the user hands a key to the server in this editor, named by the server's key guidance.
M.set_key_command = ":Phasewise key"

--- What the plugin adds to Neovim's client capabilities (0.11 merges a config's capabilities
--- into the defaults itself; 0.10 is given the merged table).
--- @return lsp.ClientCapabilities
local function capabilities()
  local ours = {
    workspace = { workspaceEdit = { documentChanges = true, changeAnnotationSupport = { groupsOnLabel = false } } },
    -- setKeyCommand: what the server's key guidance tells the user to run here
    experimental = { phasewise = { clientCommands = M.client_commands, setKeyCommand = M.set_key_command } },
  }
  if vim.fn.has("nvim-0.11") == 1 then
    return ours
  end
  return vim.tbl_deep_extend("force", vim.lsp.protocol.make_client_capabilities(), ours)
end

--- What the plugin tells the server is the user's own (`initializationOptions.userSettings`): the
--- `commands` of the settings given to setup(), which are the user's configuration (init.lua), so
--- they run unasked. Commands from anywhere else (a project's `.nvim.lua` through
--- `vim.lsp.config`, a changed `client.settings`) reach the server only as settings it pulls: a
--- workspace's, asked about before they run. Nil without commands.
--- @param settings table? the settings given to setup()
--- @return table?
function M.init_options(settings)
  local commands = vim.tbl_get(type(settings) == "table" and settings or {}, "phasewise", "commands")
  if type(commands) ~= "table" or next(commands) == nil then
    return nil
  end
  return { userSettings = { commands = commands } }
end

--- The command that starts the server: `cmd` as configured, except that the default `phasewise`,
--- when it is not on PATH, is the one the build step installed (`phasewise.install`), if any.
--- @param cmd string[]? default: the configured `cmd`
--- @return string[]
function M.server_cmd(cmd)
  cmd = cmd or M.config.cmd
  if type(cmd) ~= "table" or cmd[1] ~= "phasewise" or vim.fn.executable("phasewise") == 1 then
    return cmd
  end
  local installed = require("phasewise.install").server()
  if not installed then
    return cmd
  end
  local argv = vim.deepcopy(cmd)
  argv[1] = installed
  return argv
end

--- The `vim.lsp.Config` for the server (also what `lsp/phasewise.lua` returns).
--- @return vim.lsp.Config
function M.lsp_config()
  local config = M.config
  return {
    name = "phasewise",
    cmd = M.server_cmd(config.cmd),
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    settings = config.settings,
    -- the setup() commands, declared as the user's own: a server start reads them (see init_options)
    init_options = M.init_options(config.settings),
    -- merged into Neovim's defaults: versioned multi-file edits (checked before they land, see
    -- phasewise.edits) with their change annotations, and the quick fixes' client commands
    capabilities = capabilities(),
    handlers = {
      ["phasewise/streamText"] = function(_, params, ctx)
        require("phasewise.scratch").on_stream(params, ctx)
      end,
      -- each step of a phase that works in steps, as it ends: listed in the phase's buffer
      ["phasewise/step"] = function(_, params)
        require("phasewise.scratch").on_step(params)
      end,
      -- findings name the phase that made them (their source is `phasewise-<phase>`)
      ["textDocument/publishDiagnostics"] = function(err, params, ctx)
        vim.lsp.diagnostic.on_publish_diagnostics(err, params, ctx)
        M.name_phases(params.uri, ctx.client_id)
      end,
      -- this client's edits only: shown as a diff and confirmed (other servers keep Neovim's)
      ["workspace/applyEdit"] = function(err, params, ctx)
        return require("phasewise.edits").handler(err, params, ctx)
      end,
    },
    on_exit = function(_, _, client_id)
      -- a server that stops mid-phase sends no "end": forget its phases
      for key in pairs(running) do
        if vim.startswith(key, client_id .. ":") then
          running[key] = nil
        end
      end
    end,
    on_init = function(client)
      -- keys typed in this session survive a server restart (memory only, never disk)
      local actions = package.loaded["phasewise.actions"]
      if actions then
        actions.resend_keys(client)
      end
    end,
  }
end

--- Each finding of `uri` from client `client_id` begins with the phase that made it ("security:
--- …", from its source `phasewise-security`), wherever Neovim shows it (float, virtual text, lists)
--- and whatever the diagnostic config says of sources. What goes back to the server in a code
--- action's context is the diagnostic as it came (Neovim keeps it in `user_data.lsp`).
--- @param uri string
--- @param client_id integer
function M.name_phases(uri, client_id)
  local buf = vim.fn.bufnr(vim.uri_to_fname(uri))
  if buf == -1 or not vim.api.nvim_buf_is_loaded(buf) then
    return
  end
  local ns = vim.lsp.diagnostic.get_namespace(client_id, false)
  local diagnostics = vim.diagnostic.get(buf, { namespace = ns })
  local named = false
  for _, d in ipairs(diagnostics) do
    local phase = type(d.source) == "string" and d.source:match("^phasewise%-(.+)$")
    if phase and not vim.startswith(d.message, phase .. ": ") then
      d.message, named = phase .. ": " .. d.message, true
    end
  end
  if named then
    vim.diagnostic.set(ns, buf, diagnostics)
  end
end

--- Messages held while the user types (see `say`).
--- @type { msg: string, level: integer }[]
local held = {}

--- `vim.notify` for what arrives on its own (a phase's end, its problem, its findings): a message
--- that would not fit on the command line, while the user types, would stop the typing with a
--- hit-enter prompt; it is held until the user leaves Insert mode (the diagnostics and the
--- statusline say it meanwhile). Short ones, and any outside Insert mode, are said at once.
--- @param msg string
--- @param level integer?
function M.say(msg, level)
  local typing = vim.api.nvim_get_mode().mode:find("^[iR]") ~= nil
  if not typing or (not msg:find("\n", 1, true) and vim.fn.strdisplaywidth(msg) < vim.v.echospace) then
    return vim.notify(msg, level)
  end
  held[#held + 1] = { msg = msg, level = level }
  if #held == 1 then
    vim.api.nvim_create_autocmd("InsertLeave", {
      once = true,
      callback = vim.schedule_wrap(function()
        local all = held
        held = {}
        for _, m in ipairs(all) do
          vim.notify(m.msg, m.level)
        end
      end),
    })
  end
end

--- "plan" and "(anthropic/claude-opus-4-5)" from a progress title.
--- @param title string
--- @return string name, string who
local function title_parts(title)
  local name, who = title:match("^Phasewise ([^:]+):%s*(.*)$")
  return name or "phase", (who and who ~= "") and (" (" .. who .. ")") or ""
end

--- A report's message as a notification: the server's retries, waits, key rotations and
--- fallbacks, the countdown's number first; nil for streamed text (the plan buffer shows that).
--- @param name string the phase, e.g. "plan"
--- @param message string
--- @return string? line, string? wait the countdown ("12 s") when the message is one
function M.describe_report(name, message)
  local why, wait, at = message:match("^(.-): retrying in (.-) %(at (.-)%)$")
  if not why then -- a retry that waits for the rate limit to lift: "retrying in 44 s (at …): why"
    wait, at, why = message:match("^retrying in (.-) %(at (.-)%): (.*)$")
  end
  if why then
    return ("Phasewise %s: retry in %s (at %s) · %s"):format(name, wait, at, why), wait
  end
  why = message:match("^(.-): retrying now$")
  if why then
    return ("Phasewise %s: retrying now · %s"):format(name, why)
  end
  if message:find("falling back to ", 1, true) or message:match(", trying [%w_]+$") then
    return ("Phasewise %s: %s"):format(name, message)
  end
  return nil
end

--- @param ev { data: { client_id: integer, params: lsp.ProgressParams } }
local function on_progress(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  local value = ev.data.params.value
  if not client or client.name ~= "phasewise" or type(value) ~= "table" then
    return
  end
  local token = ev.data.params.token
  local key = ("%d:%s"):format(client.id, token)
  local edits = package.loaded["phasewise.edits"]
  if value.kind == "begin" then
    running[key] = { client_id = client.id, token = token, title = value.title }
    if edits and vim.startswith(value.title, "Phasewise code:") then
      edits.forget(client.id)
    end
    M.say(value.title .. " …", vim.log.levels.INFO)
  elseif value.kind == "report" and running[key] and value.message then
    local phase = running[key]
    local line, wait = M.describe_report(title_parts(phase.title), value.message)
    if line then
      phase.wait = wait
      local now = vim.uv.now()
      if not (wait and phase.notified_at and now - phase.notified_at < M.countdown_notify_ms) then
        phase.notified_at = wait and now or nil
        M.say(line, vim.log.levels.INFO)
      end
    end
  elseif value.kind == "end" then
    local phase = running[key]
    running[key] = nil
    local title = phase and phase.title or "Phasewise"
    local message = value.message
    -- the server ends a declined edit's phase as cancelled (older servers: document-changed); the
    -- first such end after the edit was declined is that phase's, and takes the mark
    local ended = message and (message:find("document-changed", 1, true) or message:find("cancelled", 1, true))
    if ended and edits and edits.take_declined(client.id) then
      -- the user cancelled the edit: said when it happened ("… edit cancelled, nothing was applied")
    elseif message and message:find("cancelled", 1, true) then -- not when it finished first
      local name, who = title_parts(title)
      M.say(("Phasewise: %s cancelled%s"):format(name, who), vim.log.levels.WARN)
    else
      local said = message and ("Phasewise: " .. message) or (title .. ": done")
      -- a phase whose edit the plugin applied: what it changed ("3 files changed (…)")
      local served = message and message:match("^%S+ ok %((.-)%)$")
      local change = served and edits and edits.take_applied(client.id, served)
      M.say(change and (said .. ": " .. change) or said, vim.log.levels.INFO)
    end
  end
  vim.cmd("redrawstatus!") -- every window's statusline, not only the current one's
end

--- The phases running on client `client_id` (all clients when nil), as their progress began.
--- @param client_id integer?
--- @return phasewise.Running[]
function M.running(client_id)
  local out = {}
  for _, phase in pairs(running) do
    if client_id == nil or phase.client_id == client_id then
      out[#out + 1] = phase
    end
  end
  table.sort(out, function(a, b)
    return a.title < b.title
  end)
  return out
end

--- What `:Phasewise cancel` says about a running phase: "plan (anthropic/claude-opus-4-5)".
--- @param phase phasewise.Running
--- @return string
function M.describe_running(phase)
  local name, who = title_parts(phase.title)
  return name .. who
end

--- Define `:Phasewise`, the client-side commands and the progress listener (once).
function M.register()
  if registered then
    return
  end
  registered = true
  vim.api.nvim_create_user_command("Phasewise", function(cmd)
    require("phasewise.command").run(cmd)
  end, {
    nargs = "*",
    range = true,
    desc = "Phasewise: plan, code, review, run, status, verify, compare, key, cancel, or any phase by name",
    complete = function(arglead, cmdline)
      return require("phasewise.command").complete(arglead, cmdline)
    end,
  })
  vim.lsp.commands["phasewise.setApiKey"] = function(command, ctx)
    require("phasewise.actions").set_api_key(command, ctx)
  end
  vim.lsp.commands["phasewise.openSettings"] = function(command, ctx)
    require("phasewise.actions").open_settings(command, ctx)
  end
  -- the phases' code actions: their answers shown like `:Phasewise {phase}`'s
  vim.lsp.commands["phasewise.phase"] = function(command, ctx)
    require("phasewise.command").code_action(command, ctx)
  end
  vim.api.nvim_create_autocmd("LspProgress", {
    group = vim.api.nvim_create_augroup("phasewise.progress", { clear = true }),
    callback = on_progress,
  })
end

--- Start the server for `buf` (Neovim 0.10, which has no `vim.lsp.enable`).
--- @param buf integer
local function start_010(buf)
  if vim.bo[buf].buftype ~= "" then
    return
  end
  local config = M.lsp_config()
  config.root_dir = vim.fs.root(buf, M.config.root_markers)
  vim.lsp.start(config, { bufnr = buf })
end

--- The keys of `settings` other than `phasewise`: the server asks for its `phasewise` section
--- only, so what sits beside it (`settings = { phases = … }`) is never read.
--- @param settings table?
--- @return string[]
function M.misplaced_settings(settings)
  local keys = {}
  for key in pairs(type(settings) == "table" and settings or {}) do
    if key ~= "phasewise" then
      keys[#keys + 1] = tostring(key)
    end
  end
  table.sort(keys)
  return keys
end

--- The warning about `misplaced_settings`, naming the fix; nil when there is nothing to say.
--- @param settings table?
--- @return string?
function M.misplaced_warning(settings)
  local keys = M.misplaced_settings(settings)
  if #keys == 0 then
    return nil
  end
  local fields = table.concat(vim.tbl_map(function(key)
    return key .. " = …"
  end, keys), ", ")
  return ("Phasewise: `settings.%s` %s not read (the server reads only `settings.phasewise`), so every phase "
    .. "keeps its default route (Claude). Write: settings = { phasewise = { %s } }"):format(
    table.concat(keys, "`, `settings."),
    #keys == 1 and "is" or "are",
    fields
  )
end

--- Whether the server's edits are shown and confirmed: `confirm_edits`, else the server's own
--- `phases.code.confirm` in `settings` (on unless set false).
--- @param settings table? default: the settings given to setup()
--- @return boolean
function M.confirms_edits(settings)
  if M.config.confirm_edits ~= nil then
    return M.config.confirm_edits == true
  end
  return vim.tbl_get(settings or M.config.settings or {}, "phasewise", "phases", "code", "confirm") ~= false
end

--- Register the server and the commands. Calling it again applies new settings to running servers.
--- @param opts phasewise.SetupOpts?
function M.setup(opts)
  opts = opts or {}
  local settings = opts.settings
  M.config = vim.tbl_deep_extend("force", M.config, opts)
  if settings then -- replaced, not merged: a removed route must go away
    M.config.settings = settings
    local warning = M.misplaced_warning(settings)
    if warning then
      vim.notify(warning, vim.log.levels.WARN)
    end
  end
  M.register()
  if vim.fn.has("nvim-0.11") == 1 then
    vim.lsp.config("phasewise", M.lsp_config())
    vim.lsp.enable("phasewise")
  else
    vim.api.nvim_create_autocmd("FileType", {
      group = vim.api.nvim_create_augroup("phasewise.start", { clear = true }),
      pattern = M.config.filetypes or "*",
      callback = function(ev)
        start_010(ev.buf)
      end,
    })
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and vim.bo[buf].filetype ~= "" then
        start_010(buf)
      end
    end
  end
  for _, client in ipairs(vim.lsp.get_clients({ name = "phasewise" })) do
    client.settings = M.config.settings
    require("phasewise.client").notify(client, "workspace/didChangeConfiguration", { settings = client.settings })
  end
end

--- The running phases, e.g. "Phasewise plan: anthropic/claude-opus-4-5"; "" when idle.
--- Use in 'statusline': `%{v:lua.require'phasewise'.statusline()}`.
--- @return string
function M.statusline()
  return table.concat(vim.tbl_map(function(phase)
    return phase.wait and ("%s (retry in %s)"):format(phase.title, phase.wait) or phase.title
  end, M.running()), " | ")
end

return M
