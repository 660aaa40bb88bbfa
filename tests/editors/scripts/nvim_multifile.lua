-- A rename the server makes across a project: the module (open), a caller open in another buffer
-- and a caller no buffer holds. The real server sends one workspace/applyEdit for all three; the
-- plugin shows one diff in a tab page of its own and asks. Cancel leaves every buffer and file alone
-- (the phase ends as cancelled); Apply changes the open buffers (left unsaved) and writes the file
-- that was not open (no buffer of it stays), and what lies between two changes of a buffer (an
-- extmark, a mark) stays where it was.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

local disk = T.disk

T.run(function()
  local obs = T.observed
  local phasewise = require("phasewise")
  phasewise.setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local paths = T.input.paths -- store (the module), cli (a caller, open), report (a caller, not open)
  local cli = T.open(paths.cli)
  vim.cmd.split() -- the caller stays in sight, above the module
  local buf, client = T.open(paths.store)
  assert(vim.lsp.get_clients({ bufnr = cli, name = "phasewise" })[1].id == client.id, "one client for both")
  obs.root = client.config.root_dir

  -- every workspace/applyEdit the server sends, as it reached the client
  obs.wire = {}
  local handler = client.handlers["workspace/applyEdit"]
  client.handlers["workspace/applyEdit"] = function(err, params, ctx)
    table.insert(obs.wire, vim.deepcopy(params))
    return handler(err, params, ctx)
  end

  local function state()
    local report = vim.fn.bufnr(paths.report)
    return {
      text = { store = T.text(buf), cli = T.text(cli) },
      modified = { store = vim.bo[buf].modified, cli = vim.bo[cli].modified },
      version = { store = vim.lsp.util.buf_versions[buf], cli = vim.lsp.util.buf_versions[cli] },
      disk = { store = disk(paths.store), cli = disk(paths.cli), report = disk(paths.report) },
      report_buf = report ~= -1 and {
        loaded = vim.api.nvim_buf_is_loaded(report),
        listed = vim.bo[report].buflisted,
        modified = vim.bo[report].modified,
        text = T.text(report),
      } or vim.NIL,
    }
  end

  -- the question, with what the user sees while it is open
  local answer
  obs.asked = {}
  T.on_edit_question(function(items, opts, on_choice)
    local diff = T.find_buf("phasewise://edit")
    table.insert(obs.asked, {
      items = items,
      prompt = opts.prompt,
      diff = diff ~= -1 and T.text(diff) or vim.NIL,
      diff_filetype = diff ~= -1 and vim.bo[diff].filetype or vim.NIL,
      windows = vim.tbl_map(function(win)
        return vim.fn.fnamemodify(vim.api.nvim_buf_get_name(vim.api.nvim_win_get_buf(win)), ":~:.")
      end, vim.api.nvim_tabpage_list_wins(0)),
      current = vim.api.nvim_buf_get_name(0),
      screen = (function()
        vim.cmd.redraw()
        return T.screen()
      end)(),
      state = state(),
    })
    vim.schedule(function() -- as a picker answers: after returning
      on_choice(answer)
    end)
  end)

  local results = T.record_results()

  local function code(choice)
    answer = choice
    local before = #results
    vim.cmd("Phasewise code " .. T.input.instruction)
    T.wait("the code phase", function()
      return #results > before and T.idle(client)
    end)
    local result = results[#results]
    return {
      ok = result.ok,
      applied = result.applied,
      error = result.error and { kind = result.error.kind, message = result.error.message } or vim.NIL,
      files = vim.tbl_map(function(f)
        return { path = f.path, diff = f.diff, created = f.created }
      end, result.files or {}),
      state = state(),
      diff_left = T.find_buf("phasewise://edit") ~= -1,
      diagnostics = vim.tbl_map(function(d)
        return { source = d.source, code = d.code }
      end, vim.diagnostic.get()),
      notifications = #obs.notifications,
    }
  end
  -- what sits between the two renamed lines of the open caller (T.input.between, 0-based): an
  -- extmark, which one edit spanning both lines moved to that edit's end, and a mark
  local row, col = T.input.between[1], T.input.between[2]
  local ns = vim.api.nvim_create_namespace("phasewise-test-between")
  local extmark = vim.api.nvim_buf_set_extmark(cli, ns, row, col, {})
  vim.api.nvim_buf_set_mark(cli, "a", row + 1, col, {})
  local function between()
    local mark = vim.api.nvim_buf_get_mark(cli, "a")
    return { extmark = vim.api.nvim_buf_get_extmark_by_id(cli, ns, extmark, {}), mark = { mark[1] - 1, mark[2] } }
  end
  obs.declined = code("Cancel")
  obs.declined.between = between()
  obs.accepted = code("Apply")
  obs.accepted.between = between()
  obs.buffers = vim.tbl_map(function(b)
    return vim.fn.fnamemodify(vim.api.nvim_buf_get_name(b), ":~:.")
  end, vim.tbl_filter(function(b)
    return vim.bo[b].buflisted
  end, vim.api.nvim_list_bufs()))
end)
