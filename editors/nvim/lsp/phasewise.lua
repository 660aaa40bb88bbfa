-- Defaults for `vim.lsp.config("phasewise", {...})` / `vim.lsp.enable("phasewise")` (Neovim 0.11+).
-- require("phasewise").setup() is the same with commands and a 0.10 path; see :help phasewise.
return require("phasewise").lsp_config()
