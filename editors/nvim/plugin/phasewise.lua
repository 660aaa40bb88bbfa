-- :Phasewise and the quick fixes' client-side commands; the server starts after setup() or
-- vim.lsp.enable("phasewise"). Everything else loads on first use.
if vim.g.loaded_phasewise then
  return
end
vim.g.loaded_phasewise = 1
require("phasewise").register()
