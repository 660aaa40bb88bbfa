-- Neovim with NO Phasewise plugin: only vim.lsp.config/vim.lsp.enable of the server, as a user of
-- any LSP setup has it. The plain vim.lsp.buf.code_action() lists every phase at the cursor; the
-- plan action is picked through vim.ui.select and its plan arrives as a file the server writes and
-- opens with window/showDocument; a code action applied with `filter` + `apply` lands its edit
-- through Neovim's own workspace/applyEdit.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

--- Every code action Neovim offers at `line` (1-based), as listed in vim.ui.select; picks the
--- one `pick` chooses (nil: none).
--- @param buf integer
--- @param line integer
--- @param pick (fun(action: lsp.CodeAction): boolean)?
--- @return { title: string, kind: string?, command: string?, listed: string }[]
local function code_actions(buf, line, pick)
  vim.api.nvim_win_set_buf(0, buf)
  vim.api.nvim_win_set_cursor(0, { line, 4 })
  local listed
  vim.ui.select = function(items, opts, on_choice)
    listed = {}
    local chosen
    for _, item in ipairs(items) do
      local action = item.action
      table.insert(listed, {
        title = action.title,
        kind = action.kind,
        command = action.command and action.command.command,
        listed = opts.format_item(item), -- the line the user sees
      })
      if pick and not chosen and pick(action) then
        chosen = item
      end
    end
    on_choice(chosen)
  end
  vim.lsp.buf.code_action()
  T.wait("the code actions", function()
    return listed ~= nil
  end)
  return listed
end

T.run(function()
  local obs = T.observed
  obs.plugin_loaded = pcall(require, "phasewise")
  obs.command_exists = vim.fn.exists(":Phasewise") == 2

  vim.lsp.config("phasewise", {
    cmd = T.input.cmd,
    filetypes = { "python" },
    root_dir = T.input.root,
    settings = { phasewise = T.input.settings },
  })
  vim.lsp.enable("phasewise")
  local buf, client = T.open(T.input.file)
  obs.experimental = client.config.capabilities and client.config.capabilities.experimental or vim.NIL
  obs.show_document = vim.tbl_get(client.capabilities, "window", "showDocument", "support") == true

  -- under the `# phasewise:` comment: every phase with that instruction; the plan one is picked
  obs.actions = code_actions(buf, T.input.comment_line, function(action)
    return action.kind == "source.phasewise.plan"
  end)
  local plan_path = T.input.plan_path
  T.wait("the plan shown as a document", function()
    return T.idle(client) and vim.fn.bufloaded(plan_path) == 1
  end, 30000)
  local plan_buf = vim.fn.bufnr(plan_path)
  obs.plan = {
    name = vim.api.nvim_buf_get_name(plan_buf),
    text = T.text(plan_buf),
    current = vim.api.nvim_get_current_buf() == plan_buf, -- takeFocus: the plan is in front
    filetype = vim.filetype.match({ buf = plan_buf }) or "",
  }

  -- a line with no comment nearby: each phase's own default instruction; nothing is picked
  obs.bare_actions = code_actions(buf, T.input.bare_line, nil)

  -- the code action, chosen by kind and applied at once (the instruction renames load)
  vim.api.nvim_win_set_buf(0, buf)
  vim.api.nvim_win_set_cursor(0, { T.input.comment_line, 4 })
  vim.lsp.buf.code_action({
    filter = function(action)
      return action.kind == "refactor.rewrite.phasewise.code"
    end,
    apply = true,
  })
  T.wait("the code edit", function()
    return T.idle(client) and T.text(buf):find("def read_file(", 1, true) ~= nil
  end, 30000)
  obs.text_after_code = T.text(buf)
  obs.modified = vim.bo[buf].modified
end)
