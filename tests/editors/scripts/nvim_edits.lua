-- Edits are the user's to accept. The server's code phase sends its edit through
-- workspace/applyEdit: the plugin shows the diff and asks (vim.ui.select); Cancel leaves the buffer
-- alone and the server reports the edit not applied, Apply lands it. Then the handler itself, with a
-- hand-made three-file edit (an open buffer, a file not open, a CreateFile): the diff shows all
-- three and Apply writes all; a buffer changed while the question is open refuses the whole edit;
-- with confirm_edits off only an annotation that needs confirmation asks.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  local global_apply_edit = vim.lsp.handlers["workspace/applyEdit"]
  local phasewise = require("phasewise")
  phasewise.setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local buf, client = T.open(T.input.file)
  -- only this client's applyEdit goes through the plugin; other servers keep Neovim's handler
  obs.handlers = {
    global_untouched = vim.lsp.handlers["workspace/applyEdit"] == global_apply_edit,
    client_has_own = type(client.handlers["workspace/applyEdit"]) == "function",
  }
  obs.capabilities = {
    experimental = client.config.capabilities.experimental,
    workspace_edit = client.capabilities.workspace.workspaceEdit, -- as sent: merged with the defaults
    sent_experimental = client.capabilities.experimental,
    completion = client.capabilities.textDocument.completion ~= nil, -- the defaults are still there
  }

  -- every question the plugin asks, with the diff shown while it asks; answered from `answers`
  local answers = {}
  obs.asked = {}
  T.on_edit_question(function(items, opts, on_choice)
    local diff = T.find_buf("phasewise://edit")
    local answer = table.remove(answers, 1)
    local asked = {
      items = items,
      prompt = opts.prompt,
      diff = diff ~= -1 and T.text(diff) or nil,
      diff_filetype = diff ~= -1 and vim.bo[diff].filetype or nil,
      diff_shown = diff ~= -1 and vim.fn.bufwinid(diff) ~= -1,
      answer = answer and answer.choice,
    }
    table.insert(obs.asked, asked)
    if answer and answer.before then
      answer.before()
    end
    if answer and answer.later then -- as a picker (Telescope, fzf-lua) answers: after returning
      vim.schedule(function()
        on_choice(answer.choice)
      end)
    else
      on_choice(answer and answer.choice)
    end
  end)

  -- what the server answered each phase command
  local client_mod = require("phasewise.client")
  local execute = client_mod.execute
  obs.results = {}
  client_mod.execute = function(c, b, command, arg, on_result)
    execute(c, b, command, arg, function(result)
      table.insert(obs.results, { command = command, result = result })
      on_result(result)
    end)
  end

  local function code(choice, later)
    answers = { { choice = choice, later = later } }
    local before = #obs.results
    vim.cmd("Phasewise code rename load to read_file")
    T.wait("the code phase", function()
      return #obs.results > before and T.idle(client)
    end)
    local result = obs.results[#obs.results].result
    return {
      ok = result.ok,
      applied = result.applied,
      error = result.error and { kind = result.error.kind, message = result.error.message },
      text = T.text(buf),
      diff_left = T.find_buf("phasewise://edit") ~= -1,
    }
  end
  obs.cancelled = code("Cancel")
  obs.accepted = code("Apply", true) -- answered asynchronously: the handler waits in its coroutine
  obs.modified = vim.bo[buf].modified

  -- the handler with a hand-made edit over three files
  local dir = vim.fs.dirname(T.input.file)
  local caller_path = vim.fs.joinpath(dir, "caller.py")
  local util_path = vim.fs.joinpath(dir, "util.py")
  local new_path = vim.fs.joinpath(dir, "tests", "test_store.py")
  local caller, caller_client = T.open(caller_path)
  assert(caller_client.id == client.id)
  vim.api.nvim_set_current_buf(buf)
  local function handle(params)
    local result
    coroutine.wrap(function() -- as Neovim runs a server request's handler
      result = phasewise.lsp_config().handlers["workspace/applyEdit"](nil, params, { client_id = client.id })
    end)()
    T.wait("the applyEdit answer", function()
      return result ~= nil
    end)
    return result
  end
  --- A TextEdit replacing line `line`'s characters `from`..`to` by `text`.
  local function text_edit(line, from, to, text)
    return { range = { start = { line = line, character = from }, ["end"] = { line = line, character = to } }, newText = text }
  end
  local function multi_edit(version)
    return {
      label = "Phasewise code (test)",
      edit = {
        documentChanges = {
          {
            textDocument = { uri = vim.uri_from_fname(caller_path), version = version },
            edits = { text_edit(0, 18, 22, "read_file") },
          },
          {
            textDocument = { uri = vim.uri_from_fname(util_path), version = nil },
            edits = { text_edit(1, 10, 14, "read_file") },
          },
          { kind = "create", uri = vim.uri_from_fname(new_path) },
          {
            textDocument = { uri = vim.uri_from_fname(new_path), version = nil },
            edits = { text_edit(0, 0, 0, T.input.new_file) },
          },
        },
      },
    }
  end
  local disk = T.disk

  -- a buffer edited while the question is open: the whole edit is refused
  answers = {
    {
      choice = "Apply",
      before = function()
        vim.api.nvim_buf_set_lines(caller, -1, -1, false, { "# typed meanwhile" })
      end,
    },
  }
  obs.stale = handle(multi_edit(vim.lsp.util.buf_versions[caller]))
  obs.stale_disk = { util = disk(util_path), new = disk(new_path), caller = T.text(caller) }
  vim.api.nvim_buf_set_lines(caller, -2, -1, false, {}) -- undo the typing (the version moves on again)

  -- a file that cannot be written (here a BufWritePre that fails) rolls back what was done
  local failing = vim.api.nvim_create_autocmd("BufWritePre", {
    pattern = "*/tests/test_store.py",
    callback = function()
      error("disk full")
    end,
  })
  answers = { { choice = "Apply" } }
  obs.failed_write = handle(multi_edit(vim.lsp.util.buf_versions[caller]))
  local edits = require("phasewise.edits")
  obs.failed_write_said = edits.take_applied(client.id, "test") or vim.NIL -- nothing applied: nothing to say
  obs.failed_write_after = { util = disk(util_path), new = disk(new_path), caller = T.text(caller),
    new_buffer = T.find_buf(new_path) }
  vim.api.nvim_del_autocmd(failing)

  answers = { { choice = "Apply" } }
  obs.multi = handle(multi_edit(vim.lsp.util.buf_versions[caller]))
  obs.multi_said = edits.take_applied(client.id, "test") or vim.NIL -- what the phase's end would add
  obs.multi_after = {
    caller = T.text(caller),
    caller_modified = vim.bo[caller].modified,
    util = disk(util_path),
    new = disk(new_path),
    unsaved = vim.tbl_map(function(b)
      return vim.fs.basename(vim.api.nvim_buf_get_name(b))
    end, vim.tbl_filter(function(b)
      return vim.bo[b].modified
    end, vim.api.nvim_list_bufs())),
  }

  -- confirmation off: applied without a question, unless an annotation needs confirmation
  phasewise.config.confirm_edits = false
  local asked_before = #obs.asked
  local function insert_line(text, annotated)
    local edit = text_edit(0, 0, 0, text)
    local params = { edit = { changes = { [vim.uri_from_fname(util_path)] = { edit } } } }
    if annotated then
      edit.annotationId = "phasewise"
      params.edit = {
        documentChanges = {
          { textDocument = { uri = vim.uri_from_fname(util_path), version = nil }, edits = { edit } },
        },
        changeAnnotations = { phasewise = { label = "Phasewise code", needsConfirmation = true } },
      }
    end
    return handle(params)
  end
  obs.unconfirmed = insert_line("# one\n", false)
  obs.unconfirmed_said = edits.take_applied(client.id, "coder/glm-sim") or vim.NIL -- no label: any route
  obs.unconfirmed_asked = #obs.asked - asked_before
  answers = { { choice = "Cancel" } }
  obs.annotated = insert_line("# two\n", true)
  obs.annotated_asked = #obs.asked - asked_before
  obs.util_at_end = disk(util_path) -- never open: written each time, its buffer gone again
  obs.util_buffer = vim.fn.bufnr(util_path)
end)
