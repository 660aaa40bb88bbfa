-- lazy.nvim's build step on a clone with no `phasewise` on PATH: :checkhealth says how to install,
-- require("phasewise.install").build() runs in a coroutine resumed as lazy.nvim resumes it (its
-- yielded messages are its progress), then :checkhealth finds the server it installed under
-- stdpath("data") and setup() starts that server on a Python file.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  vim.cmd.runtime("plugin/phasewise.lua") -- -u NONE loads no plugins by itself
  obs.on_path = vim.fn.executable("phasewise") == 1
  obs.data = vim.fn.stdpath("data")

  vim.cmd("checkhealth phasewise")
  obs.health_missing = T.text(vim.api.nvim_get_current_buf())
  vim.cmd("silent! tabonly")

  local install = require("phasewise.install")
  obs.repo_root = install.repo_root()
  obs.progress = {}
  local result
  local build = coroutine.create(function(plugin)
    return require("phasewise.install").build()
  end)
  T.wait("the build step to end", function()
    local ok, value = coroutine.resume(build, { dir = obs.repo_root, name = "phasewise" })
    if not ok then
      error("build failed: " .. tostring(value))
    end
    if coroutine.status(build) == "dead" then
      result = value
      return true
    end
    if obs.progress[#obs.progress] ~= value then
      obs.progress[#obs.progress + 1] = value
    end
    return false
  end, T.input.build_timeout_ms)
  obs.built = result
  obs.server = install.server()
  -- Neovim 0.11's own way (lsp/phasewise.lua, read at first use) starts the same server
  obs.native_cmd = vim.lsp.config.phasewise.cmd

  require("phasewise").setup({ settings = { phasewise = T.input.settings } })
  vim.cmd("checkhealth phasewise")
  obs.health_installed = T.text(vim.api.nvim_get_current_buf())
  vim.cmd("silent! tabonly")

  local _, client = T.open(T.input.file)
  obs.cmd = client.config.cmd
  obs.server_version = client.server_info and client.server_info.version
  obs.plugin_version = require("phasewise").version
  vim.cmd("checkhealth phasewise")
  obs.health_running = T.text(vim.api.nvim_get_current_buf())
end)
