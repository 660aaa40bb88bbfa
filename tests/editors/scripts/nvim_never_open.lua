-- Two changes in a row across the example project: inventory.py (open, in its window) and
-- orders.py (never open). Each change is shown in a tab page of its own, read to its end (`G`) and
-- applied with its key; orders.py is written by each one and no buffer of it stays behind, and after
-- `:w` of the visible file the project on disk still imports.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  require("phasewise").setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local root = T.input.root
  local orders = vim.fs.joinpath(root, "orders.py")
  local buf, client = T.open(vim.fs.joinpath(root, "inventory.py"))
  local results = T.record_results()

  obs.questions = {}
  T.on_edit_question(function(_, opts, answer)
    vim.cmd.redraw()
    local seen = {
      prompt = opts.prompt,
      winbar = vim.wo[opts.win].winbar,
      current = vim.api.nvim_get_current_win() == opts.win,
      tabs = #vim.api.nvim_list_tabpages(),
      width = vim.api.nvim_win_get_width(opts.win),
      lines = vim.api.nvim_buf_line_count(opts.buf),
      top = T.screen(),
    }
    vim.api.nvim_feedkeys("G", "x", false) -- to the diff's end, as the user reads it
    vim.cmd.redraw()
    seen.bottom = T.screen()
    table.insert(obs.questions, seen)
    answer("Apply")
  end)

  --- Whether the project on disk imports (the orders module and what it takes from inventory).
  local function imports()
    local done = vim.system({ T.input.cmd[1], "-c", "import orders" }, { cwd = root, text = true }):wait()
    return { code = done.code, stderr = done.stderr }
  end

  local function change(instruction)
    local before = #results
    vim.cmd("Phasewise code " .. instruction)
    T.wait("the code phase", function()
      return #results > before and T.idle(client)
    end)
    local result = results[#results]
    local state = {
      ok = result.ok,
      applied = result.applied,
      said = T.observed.notifications[#T.observed.notifications].msg,
      orders_disk = T.disk(orders),
      orders_buffer = vim.fn.bufnr(orders),
      ls = vim.fn.execute("ls!"),
      inventory_modified = vim.bo[buf].modified,
      tabs = #vim.api.nvim_list_tabpages(),
      current = vim.api.nvim_get_current_buf() == buf,
    }
    vim.api.nvim_buf_call(buf, function()
      vim.cmd("silent write")
    end)
    state.imports = imports()
    return state
  end
  obs.first = change("rename find_item to find_by_sku")
  obs.second = change("rename restock to add_stock")
  -- Neovim files every line of a server's stderr as [ERROR]: the server's routine lines are not there
  obs.lsp_log = T.disk(vim.lsp.get_log_path()) or ""
end)
