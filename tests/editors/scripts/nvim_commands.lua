-- Named commands (issue 22, item 2), as a Neovim user meets them: a command given in setup() (the
-- user's init.lua) runs unasked when an agent phase calls run_command; commands a project adds (its
-- `.nvim.lua`, trusted with `:trust` and run as 'exrc' runs it: `vim.lsp.config("phasewise", …)`)
-- make the server ask with `window/showMessageRequest`, which Neovim shows with vim.ui.select. The
-- user allows one once (it runs) and denies the other (it does not): the pytest checks the marker
-- files on disk.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  require("phasewise").setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  obs.init_options = require("phasewise").lsp_config().init_options or vim.NIL

  -- the project's .nvim.lua, trusted, then run as Neovim runs an 'exrc' file
  local exrc = T.input.exrc
  vim.cmd.edit(vim.fn.fnameescape(exrc)) -- :trust, in its buffer
  vim.secure.trust({ action = "allow", bufnr = 0 })
  vim.cmd("bwipeout")
  assert(loadstring(assert(vim.secure.read(exrc), "the .nvim.lua is not trusted")))()

  -- the questions, as vim.ui.select shows them; answered as the user would, by what is asked
  obs.asked = {}
  vim.ui.select = function(items, opts, on_choice)
    local titles = vim.tbl_map(function(item)
      return opts.format_item and opts.format_item(item) or tostring(item)
    end, items)
    local answer = opts.prompt:find("once.txt", 1, true) and "Allow once"
      or opts.prompt:find("never.txt", 1, true) and "Deny"
      or nil
    table.insert(obs.asked, { prompt = opts.prompt, kind = opts.kind or vim.NIL, items = titles,
                              answer = answer or vim.NIL })
    for i, item in ipairs(items) do
      if item.title == answer then
        return on_choice(item, i)
      end
    end
    on_choice(nil)
  end

  local _, client = T.open(T.input.file)
  local results = T.record_results()

  vim.cmd("Phasewise plan " .. T.input.instruction)
  T.wait("the plan phase", function()
    return #results > 0 and T.idle(client)
  end, 30000)
  local plan = results[1]
  obs.plan = { ok = plan.ok, text = plan.text, steps = plan.steps or {} }
end)
