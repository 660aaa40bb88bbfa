--- Installs the Phasewise server for the plugin: a virtual environment under
--- `stdpath("data")/phasewise/venv` holding the package of the repository this plugin is part of
--- (uv makes and fills it when uv is on PATH, else Python's own venv and pip). lazy.nvim's `build`
--- step calls `build()`; `server()` is where the plugin looks when `phasewise` is not on PATH.
--- One place whichever tool installed it, so the plugin finds it without knowing how it came.
local M = {}

--- The managed virtual environment.
--- @return string
function M.venv()
  return vim.fs.joinpath(vim.fn.stdpath("data") --[[@as string]], "phasewise", "venv")
end

local windows = vim.fn.has("win32") == 1

--- @param venv string
--- @param name string
--- @return string
local function venv_bin(venv, name)
  return vim.fs.joinpath(venv, windows and "Scripts" or "bin", windows and (name .. ".exe") or name)
end

--- The server the build step installed, when it is there.
--- @return string?
function M.server()
  local exe = venv_bin(M.venv(), "phasewise")
  return vim.fn.executable(exe) == 1 and exe or nil
end

--- The root of the repository this plugin is part of (its `pyproject.toml` is the server's package).
--- @return string?
function M.repo_root()
  local here = debug.getinfo(1, "S").source:sub(2) -- …/editors/nvim/lua/phasewise/install.lua
  local root = vim.fn.fnamemodify(here, ":p:h:h:h:h:h")
  return vim.uv.fs_stat(vim.fs.joinpath(root, "pyproject.toml")) and root or nil
end

--- Run `argv` to its end. Inside a coroutine (lazy.nvim runs `build` in one) it yields a progress
--- message while it waits, so Neovim stays responsive; called directly, it blocks.
--- @param argv string[]
--- @param what string said while it runs
--- @return vim.SystemCompleted
local function run(argv, what)
  local co = coroutine.running()
  if not (co and coroutine.isyieldable()) then
    return vim.system(argv, { text = true }):wait()
  end
  local done ---@type vim.SystemCompleted?
  vim.system(argv, { text = true }, function(result)
    done = result
  end)
  while not done do
    coroutine.yield(what)
  end
  return done
end

--- @param result vim.SystemCompleted
--- @param argv string[]
local function check(result, argv)
  if result.code ~= 0 then
    local out = vim.trim((result.stderr or "") .. "\n" .. (result.stdout or ""))
    local lines = vim.split(out, "\n")
    error(("Phasewise: `%s` failed (exit %d):\n%s"):format(
      table.concat(argv, " "), result.code, table.concat(vim.list_slice(lines, math.max(1, #lines - 15)), "\n")
    ), 0)
  end
end

--- The Python to make the environment with: `opts.python`, `g:python3_host_prog`, python3, python.
--- @param python string?
--- @return string
local function find_python(python)
  for _, candidate in ipairs({ python or false, vim.g.python3_host_prog or false, "python3", "python" }) do
    if candidate and vim.fn.executable(vim.fn.expand(candidate)) == 1 then
      return vim.fn.expand(candidate)
    end
  end
  error("Phasewise: no Python found (python3, python): the server needs Python 3.11 or later", 0)
end

--- @class phasewise.InstallOpts
--- @field root string? the repository to install (default: the one this plugin is part of)
--- @field python string? the Python to make the environment with (pip only; uv finds a 3.11+ itself)
--- @field uv boolean? use uv when it is on PATH (default true); false: Python's venv and pip

--- Install (or update) the server into `venv()` from the plugin's repository. lazy.nvim:
--- `build = function() require("phasewise.install").build() end` (with the plugin's
--- `editors/nvim` on the runtimepath). Raises an error saying what failed.
--- @param opts phasewise.InstallOpts?
--- @return string server the installed `phasewise` executable
function M.build(opts)
  opts = opts or {}
  local root = opts.root or M.repo_root()
  if not root then
    error("Phasewise: the plugin is not inside the Phasewise repository (no pyproject.toml above it): "
      .. "pass { root = … }, or install the server from a clone or a wheel (see docs/install.md)", 0)
  end
  local venv = M.venv()
  local python = venv_bin(venv, "python")
  local uv = opts.uv ~= false and vim.fn.exepath("uv") or ""
  local steps = {} ---@type { argv: string[], what: string }[]
  if uv ~= "" then
    if vim.fn.executable(python) ~= 1 then
      steps[#steps + 1] = { argv = { uv, "venv", "--python", opts.python or ">=3.11", venv }, what = "uv venv" }
    end
    steps[#steps + 1] = {
      argv = { uv, "pip", "install", "--python", python, "--reinstall-package", "phasewise", root },
      what = "uv pip install (the server and its dependencies)",
    }
  else
    if vim.fn.executable(python) ~= 1 then
      local base = find_python(opts.python)
      steps[#steps + 1] = {
        argv = { base, "-c", "import sys; sys.exit('Python %d.%d: the server needs 3.11 or later' % "
          .. "sys.version_info[:2] if sys.version_info < (3, 11) else 0)" },
        what = "checking " .. base,
      }
      steps[#steps + 1] = { argv = { base, "-m", "venv", venv }, what = "python -m venv" }
    end
    -- --upgrade: a path is built and installed again even at the same version (a newer checkout)
    steps[#steps + 1] = {
      argv = { python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--upgrade", root },
      what = "pip install (the server and its dependencies)",
    }
  end
  for _, step in ipairs(steps) do
    check(run(step.argv, "Phasewise: " .. step.what .. " …"), step.argv)
  end
  local server = M.server()
  if not server then
    error("Phasewise: installed, but " .. venv_bin(venv, "phasewise") .. " is not there", 0)
  end
  local version = run({ server, "--version" }, "Phasewise: checking the server")
  check(version, { server, "--version" })
  local said = ("Phasewise: %s installed in %s"):format(vim.trim(version.stdout), venv)
  if coroutine.running() and coroutine.isyieldable() then
    coroutine.yield(said)
  else
    vim.notify(said, vim.log.levels.INFO)
  end
  return server
end

return M
