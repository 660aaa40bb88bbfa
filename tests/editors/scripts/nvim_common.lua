-- Shared by the Neovim test scripts (run as `nvim --headless -u NONE -l nvim_<name>.lua`).
-- Input comes as JSON in $PHASEWISE_TEST_INPUT; what the script observed goes as JSON to
-- $PHASEWISE_TEST_OUT for the pytest to assert on. Waiting is for conditions, never a sleep.
local T = {}

--- @type table<string, any>
T.observed = { notifications = {} }
T.input = vim.json.decode((assert(os.getenv("PHASEWISE_TEST_INPUT"), "PHASEWISE_TEST_INPUT")))

if T.input.plugin ~= vim.NIL then -- null: a test of Neovim with no Phasewise plugin at all
  vim.opt.runtimepath:prepend(T.input.plugin)
end

-- every vim.notify message, in order (they never carry a key)
vim.notify = function(msg, level)
  table.insert(T.observed.notifications, { msg = msg, level = level or vim.log.levels.INFO })
end

--- Wait for `predicate`, failing with `what` after `timeout_ms`.
--- @param what string
--- @param predicate fun(): boolean
--- @param timeout_ms integer?
function T.wait(what, predicate, timeout_ms)
  if not vim.wait(timeout_ms or 15000, predicate, 10) then
    error("timed out waiting for " .. what, 2)
  end
end

--- Open `path` as a Python buffer and wait for the Phasewise client to attach and initialize.
--- @param path string
--- @return integer buf, vim.lsp.Client client
function T.open(path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].filetype = "python" -- -u NONE: no filetype detection, and `enable` starts on FileType
  local client
  T.wait("the phasewise client to attach", function()
    client = vim.lsp.get_clients({ bufnr = buf, name = "phasewise" })[1]
    return client ~= nil and client.initialized == true
  end)
  return buf, client
end

--- True when the client has no command request in flight.
--- @param client vim.lsp.Client
function T.idle(client)
  for _, req in pairs(client.requests) do
    if req.type == "pending" then
      return false
    end
  end
  return true
end

--- Every result a Phasewise command's call through the plugin (`phasewise.client.execute`) gets from
--- now on, in order: the returned table fills as answers come.
--- @return table[]
function T.record_results()
  local client_mod = require("phasewise.client")
  local execute = client_mod.execute
  local results = {}
  client_mod.execute = function(c, b, command, arg, on_result)
    execute(c, b, command, arg, function(result)
      table.insert(results, result)
      on_result(result)
    end)
  end
  return results
end

--- Answer every change the plugin shows (its diff in a tab page of its own) as the user does: with
--- the key of `ask(items, opts, answer)`'s choice, pressed in the diff's window. `ask` sees what the
--- question looks like (`opts.prompt`, `opts.buf`, `opts.win`) and calls `answer("Apply"|"Cancel")`
--- at once or later (nil: closes the diff's window without an answer).
--- @param ask fun(items: string[], opts: { prompt: string, buf: integer, win: integer }, answer: fun(choice: string?))
function T.on_edit_question(ask)
  vim.api.nvim_create_autocmd("User", {
    pattern = "PhasewiseEditShown",
    group = vim.api.nvim_create_augroup("phasewise-test-question", { clear = true }),
    callback = function(ev)
      local data = ev.data
      ask({ "Apply", "Cancel" }, data, function(choice)
        if not vim.api.nvim_win_is_valid(data.win) then
          return
        elseif choice == nil then -- dismissed: the diff's window closed without an answer
          vim.api.nvim_win_close(data.win, true)
          return
        end
        vim.api.nvim_set_current_win(data.win)
        vim.api.nvim_feedkeys(choice == "Apply" and "a" or "c", "x", false)
      end)
    end,
  })
end

--- @param buf integer
--- @return string
function T.text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
end

--- A file's text on disk, nil when it does not exist.
--- @param path string
--- @return string?
function T.disk(path)
  local f = io.open(path)
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

--- The buffer whose name starts with `prefix`, or -1.
--- @param prefix string
--- @return integer
function T.find_buf(prefix)
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    if vim.startswith(vim.api.nvim_buf_get_name(b), prefix) then
      return b
    end
  end
  return -1
end

--- @param substring string
--- @return boolean
function T.notified(substring)
  for _, n in ipairs(T.observed.notifications) do
    if n.msg:find(substring, 1, true) then
      return true
    end
  end
  return false
end

--- The screen's cells from `row`, `col` (1-based), `height` rows of `width`, one string per row
--- (trailing blanks cut), as the last redraw left them.
--- @return string[]
local function cells(row, col, height, width)
  local rows = {}
  for r = row, row + height - 1 do
    local line = {}
    for c = col, col + width - 1 do
      line[#line + 1] = vim.fn.screenstring(r, c)
    end
    rows[#rows + 1] = (table.concat(line):gsub("%s+$", ""))
  end
  return rows
end

--- What the screen shows, one string per row.
--- @return string[]
function T.screen()
  return cells(1, 1, vim.o.lines, vim.o.columns)
end

--- What window `win` shows, one string per row of it.
--- @param win integer
--- @return string[]
function T.window_rows(win)
  local pos = vim.fn.win_screenpos(win)
  return cells(pos[1], pos[2], vim.api.nvim_win_get_height(win), vim.api.nvim_win_get_width(win))
end

--- Run the test body, write what was observed, and exit (non-zero on failure).
--- @param body fun()
function T.run(body)
  local ok, err = xpcall(body, debug.traceback)
  if not ok then
    T.observed.error = tostring(err)
  end
  local file = assert(io.open(assert(os.getenv("PHASEWISE_TEST_OUT")), "w"))
  file:write(vim.json.encode(T.observed))
  file:close()
  if not ok then
    io.stderr:write(tostring(err), "\n")
    vim.cmd("cquit 1")
  end
  vim.cmd("qall!")
end

return T
