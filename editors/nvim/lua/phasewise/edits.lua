--- Edits are the user's to accept: the Phasewise client's `workspace/applyEdit` handler shows every
--- file of the WorkspaceEdit as one unified diff in a tab page of its own, to read in full before
--- answering with a key (`a` apply, `c`/`q` cancel).
--- The edit lands whole or not at all, and is refused when any document is no longer what the diff
--- was computed on (a version that moved on, a file that changed on disk).
local M = {}

--- One file the edit touches, as the diff shows it.
--- @class phasewise.FileChange
--- @field path string absolute file name
--- @field before string[]? its lines when the edit was shown; nil when the file does not exist
--- @field after string[]? its lines once the edit is applied; nil when the edit deletes it
--- @field version integer? the document version its first TextDocumentEdit was computed on
--- @field created boolean? made by CreateFile
--- @field base string[]? a RenameFile target: the lines it is renamed from (what its diff starts at)
--- @field renamed_to string? RenameFile: where it goes
--- @field was_loaded boolean a loaded buffer held it before the edit
--- @field open boolean that buffer is in a window or holds unsaved changes: the edit is left unsaved
--- there for the user to see and save; any other file is written and its buffer left as it was
--- @field had_buf boolean a buffer (loaded or not) was named after it before the edit
--- @field listed boolean? that buffer was listed

--- @class phasewise.EditPreview
--- @field files phasewise.FileChange[] in the order the edit names them
--- @field by_path table<string, phasewise.FileChange>

--- Client ids whose running code phase's edit the user cancelled (see `declined`).
--- @type table<integer, boolean>
local declined = {}

--- What the last edit applied for each client id did (see `take_applied`): `who` the route of its
--- label ("Phasewise code (coder/glm-sim)"), `summary` from `describe`.
--- @type table<integer, { who: string?, summary: string }>
local applied = {}

--- What the last applied edit of each client id did, until a run's summary takes it (`take_last`).
--- @type table<integer, string>
local last = {}

--- @param path string
--- @return string
local function rel(path)
  return vim.fn.fnamemodify(path, ":~:.")
end

--- The loaded buffer holding `path`, if any (never creates one, unlike `vim.uri_to_bufnr`).
--- @param path string
--- @return integer?
local function loaded_buf(path)
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(buf) and vim.api.nvim_buf_get_name(buf) == path then
      return buf
    end
  end
  return nil
end

--- Whether the user can see `buf`'s change: it is in a window (of any tab page) or holds unsaved
--- changes of the user's own (written by no one but the user).
--- @param buf integer
--- @return boolean
local function open_buf(buf)
  return #vim.fn.win_findbuf(buf) > 0 or vim.bo[buf].modified
end

--- The buffer (loaded or not) named `path`, if any.
--- @param path string
--- @return integer?
local function named_buf(path)
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_get_name(buf) == path then
      return buf
    end
  end
  return nil
end

--- What `path` holds now: its buffer (open buffers win over disk), else the file; nil if neither.
--- @param path string
--- @return string[]?
local function current_lines(path)
  local buf = loaded_buf(path)
  if buf then
    return vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  end
  if vim.fn.filereadable(path) == 1 then
    local lines = vim.fn.readfile(path)
    return #lines > 0 and lines or { "" } -- an empty file loads as one empty line
  end
  return nil
end

--- `lines` with `edits` applied the way Neovim will apply them (through a throwaway buffer, so
--- the preview is exactly what lands: same ordering, encodings and end-of-file rules).
--- @param lines string[]
--- @param edits lsp.TextEdit[]
--- @param encoding string
--- @param new_file boolean? a created file: its buffer's last empty line is the final newline
--- @return string[]
local function edited(lines, edits, encoding, new_file)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.lsp.util.apply_text_edits(vim.deepcopy(edits), buf, encoding)
  if new_file then
    M.trim_final_newline(buf)
  end
  local out = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  vim.api.nvim_buf_delete(buf, { force = true })
  return out
end

--- A created file filled by an insertion ending in "\n" has an empty last line that would be
--- written as an extra blank line: drop it ('eol' writes the final newline).
--- @param buf integer
function M.trim_final_newline(buf)
  local n = vim.api.nvim_buf_line_count(buf)
  if n > 1 and vim.api.nvim_buf_get_lines(buf, n - 1, n, false)[1] == "" then
    vim.api.nvim_buf_set_lines(buf, n - 1, n, false, {})
  end
end

--- Every file of `edit` before and after; errors (a string) when the edit cannot apply as given.
--- @param edit lsp.WorkspaceEdit
--- @param encoding string
--- @return phasewise.EditPreview
function M.preview(edit, encoding)
  --- @type phasewise.EditPreview
  local preview = { files = {}, by_path = {} }
  local function file(uri)
    local path = vim.uri_to_fname(uri)
    local f = preview.by_path[path]
    if not f then
      local before = current_lines(path)
      f = { path = path, before = before, after = before and vim.deepcopy(before) }
      local held, named = loaded_buf(path), named_buf(path)
      f.was_loaded, f.open = held ~= nil, held ~= nil and open_buf(held)
      f.had_buf, f.listed = named ~= nil, named and vim.bo[named].buflisted
      preview.by_path[path] = f
      table.insert(preview.files, f)
    end
    return f
  end
  local function text_edits(uri, edits, version)
    local f = file(uri)
    if f.after == nil then
      error(("%s does not exist"):format(rel(f.path)), 0)
    end
    if f.version == nil and type(version) == "number" then
      f.version = version
    end
    f.after = edited(f.after, edits, encoding, f.created)
  end
  if edit.documentChanges then
    for _, change in ipairs(edit.documentChanges) do
      local opts = change.options or {}
      if change.kind == "create" then
        local f = file(change.uri)
        if f.after ~= nil and not (opts.overwrite or opts.ignoreIfExists) then
          error(("%s already exists"):format(rel(f.path)), 0)
        end
        if f.after == nil or opts.overwrite then
          f.after, f.created = { "" }, true
        end
      elseif change.kind == "rename" then
        local from, to = file(change.oldUri), file(change.newUri)
        if from.after == nil then
          error(("%s does not exist"):format(rel(from.path)), 0)
        end
        if to.after ~= nil and not (opts.overwrite or opts.ignoreIfExists) then
          error(("%s already exists"):format(rel(to.path)), 0)
        end
        to.after, to.base = from.after, from.before
        from.after, from.renamed_to = nil, to.path
      elseif change.kind == "delete" then
        local f = file(change.uri)
        if f.after == nil and not opts.ignoreIfNotExists then
          error(("%s does not exist"):format(rel(f.path)), 0)
        end
        f.after = nil
      elseif change.kind then
        error(("unsupported change %q"):format(change.kind), 0)
      else
        text_edits(change.textDocument.uri, change.edits, change.textDocument.version)
      end
    end
  else
    local uris = vim.tbl_keys(edit.changes or {})
    table.sort(uris)
    for _, uri in ipairs(uris) do
      text_edits(uri, edit.changes[uri], nil)
    end
  end
  return preview
end

--- Why the edit may not land now: a document whose version moved on, or whose text is no longer
--- what the diff shows; nil when every file is as it was.
--- @param preview phasewise.EditPreview
--- @return string?
function M.stale(preview)
  for _, f in ipairs(preview.files) do
    if f.version ~= nil then
      local buf = loaded_buf(f.path)
      if not buf then
        return ("%s is no longer open (the edit was made for version %d)"):format(rel(f.path), f.version)
      end
      local now = vim.lsp.util.buf_versions[buf]
      if now ~= f.version then
        return ("%s changed (version %s; the edit was made for version %d)"):format(rel(f.path), now, f.version)
      end
    end
    if not vim.deep_equal(current_lines(f.path), f.before) then
      return ("%s changed since the edit was shown"):format(rel(f.path))
    end
  end
  return nil
end

--- @param a string[]?
--- @param b string[]?
--- @return string
local function unified(a, b)
  local function text(lines)
    return lines and (table.concat(lines, "\n") .. "\n") or ""
  end
  local diff = vim.text and vim.text.diff or vim.diff
  return diff(text(a), text(b), { result_type = "unified", ctxlen = 3 }) --[[@as string]]
end

--- The lines of the diff buffer: a summary of every file, then each file's unified diff.
--- @param preview phasewise.EditPreview
--- @param label string
--- @return string[]
function M.render(preview, label)
  local n = #preview.files
  local lines = { ("# %s: %d file%s"):format(label, n, n == 1 and "" or "s") }
  for _, f in ipairs(preview.files) do
    local mark, note
    if f.renamed_to then
      mark, note = "R", "→ " .. rel(f.renamed_to)
    elseif f.after == nil then
      mark, note = "D", "(deleted)"
    elseif f.base then
      mark, note = "A", "(renamed)"
    elseif f.created or f.before == nil then
      mark, note = "A", "(new file)"
    else
      mark = "M"
      note = f.open and ("(open%s)"):format(f.version and (", version " .. f.version) or "") or "(not open)"
    end
    lines[#lines + 1] = ("#   %s %s %s"):format(mark, rel(f.path), note)
  end
  for _, f in ipairs(preview.files) do
    local before = f.base or f.before
    local body = unified(before, f.after)
    if body ~= "" then
      lines[#lines + 1] = ""
      lines[#lines + 1] = "--- " .. (before and ("a/" .. rel(f.path)) or "/dev/null")
      lines[#lines + 1] = "+++ " .. (f.after and ("b/" .. rel(f.path)) or "/dev/null")
      vim.list_extend(lines, vim.split(body, "\n", { plain = true, trimempty = true }))
    end
  end
  return lines
end

--- Put every touched buffer and written file back as it was (an apply that failed half-way).
--- @param preview phasewise.EditPreview
--- @param written table<string, boolean> paths already written by this apply
local function restore(preview, written)
  for _, f in ipairs(preview.files) do
    local buf = loaded_buf(f.path)
    if f.before == nil or f.created then
      if buf then
        pcall(vim.api.nvim_buf_delete, buf, { force = true })
      end
      if f.before == nil then
        os.remove(f.path)
      end
    end
    if f.before ~= nil then
      if buf and not f.created then
        if f.was_loaded then
          vim.api.nvim_buf_set_lines(buf, 0, -1, false, f.before)
          if written[f.path] then -- a hidden buffer: as unmodified as its file, written back below
            vim.bo[buf].modified = false
          end
        else -- loaded by the edit: gone again
          pcall(vim.api.nvim_buf_delete, buf, { force = true })
        end
      end
      if written[f.path] or f.created then
        pcall(vim.fn.writefile, f.before, f.path)
      end
    end
  end
end

--- Apply the whole edit, or nothing: refused when stale, rolled back if anything fails or does
--- not come out as the diff showed. Buffers the user sees (`open`) are left modified for the user
--- to save; every other file is written, and a buffer loaded only for that is unloaded again.
--- @param preview phasewise.EditPreview
--- @param edit lsp.WorkspaceEdit
--- @param encoding string
--- @return lsp.ApplyWorkspaceEditResult result, table<string, boolean> written the paths written
function M.apply(preview, edit, encoding)
  local why = M.stale(preview)
  if why then
    return { applied = false, failureReason = why .. "; nothing was applied" }, {}
  end
  for _, f in ipairs(preview.files) do -- as the user left it once the diff closed
    local held = loaded_buf(f.path)
    f.open = held ~= nil and open_buf(held)
  end
  local written = {}
  local ok, err = pcall(function()
    vim.lsp.util.apply_workspace_edit(edit, encoding)
    for _, f in ipairs(preview.files) do -- first check everything, then write
      local buf = f.after and loaded_buf(f.path)
      if buf and f.created then
        M.trim_final_newline(buf)
      end
      if f.after and not vim.deep_equal(current_lines(f.path), f.after) then
        error(("%s did not come out as the diff showed"):format(rel(f.path)), 0)
      end
    end
    for _, f in ipairs(preview.files) do
      local buf = f.after and not f.open and loaded_buf(f.path)
      if buf then
        vim.api.nvim_buf_call(buf, function()
          vim.cmd("silent write")
        end)
        written[f.path] = true
      end
    end
  end)
  if not ok then
    restore(preview, written)
    return { applied = false, failureReason = tostring(err) .. "; nothing was applied" }, {}
  end
  -- a buffer the edit loaded only to write its file goes again: nothing of the change may stay
  -- in a buffer the user cannot see (the next change would be left unsaved there)
  for _, f in ipairs(preview.files) do
    local buf = written[f.path] and not f.was_loaded and loaded_buf(f.path)
    if buf and not vim.bo[buf].modified then
      if f.had_buf then
        pcall(vim.api.nvim_buf_delete, buf, { unload = true })
        vim.bo[buf].buflisted = f.listed == true
      else
        pcall(vim.api.nvim_buf_delete, buf, {})
      end
    end
  end
  return { applied = true }, written
end

--- What an applied edit did, in a few words: how many files it changed, which the plugin wrote
--- to disk (no buffer held them), created, renamed or deleted, and which open buffers it left
--- unsaved, e.g. "3 files changed (report.py written to disk; store.py, cli.py unsaved)".
--- @param preview phasewise.EditPreview
--- @param written table<string, boolean> the paths `apply` wrote
--- @return string
function M.describe(preview, written)
  local n = 0
  local wrote, created, renamed, deleted, unsaved, hidden = {}, {}, {}, {}, {}, {}
  for _, f in ipairs(preview.files) do
    if not f.base then -- a rename's target is told with its source
      n = n + 1
      local buf = loaded_buf(f.path)
      if f.renamed_to then
        renamed[#renamed + 1] = ("%s renamed to %s"):format(rel(f.path), rel(f.renamed_to))
      elseif f.after == nil then
        deleted[#deleted + 1] = rel(f.path)
      elseif f.created or f.before == nil then
        created[#created + 1] = rel(f.path)
      elseif written[f.path] then
        wrote[#wrote + 1] = rel(f.path)
      elseif buf and vim.bo[buf].modified then
        -- a hidden buffer with unsaved changes of the user's: not written, so said where it is
        local list = #vim.fn.win_findbuf(buf) > 0 and unsaved or hidden
        list[#list + 1] = rel(f.path)
      end
    end
  end
  local said = {}
  for _, group in ipairs({ { wrote, " written to disk" }, { created, " created" }, { deleted, " deleted" },
    { unsaved, " unsaved" }, { hidden, " unsaved in a hidden buffer (:ls!)" } }) do
    if #group[1] > 0 then
      said[#said + 1] = table.concat(group[1], ", ") .. group[2]
    end
  end
  vim.list_extend(said, renamed)
  local summary = ("%d file%s changed"):format(n, n == 1 and "" or "s")
  return #said > 0 and ("%s (%s)"):format(summary, table.concat(said, "; ")) or summary
end

--- Confirm when the plugin's `confirm_edits` is on (default: the server's `phases.code.confirm`,
--- itself on by default) or when the server marked any change as needing confirmation.
--- @param edit lsp.WorkspaceEdit
--- @param client vim.lsp.Client? whose settings hold the server's `phases.code.confirm`
--- @return boolean
function M.wants_confirmation(edit, client)
  if require("phasewise").confirms_edits(client and client.settings) then
    return true
  end
  for _, annotation in pairs(edit.changeAnnotations or {}) do
    if annotation.needsConfirmation then
      return true
    end
  end
  return false
end

--- Show `params.edit`, ask, and call `done` with the answer for the server.
--- @param params lsp.ApplyWorkspaceEditParams
--- @param client vim.lsp.Client
--- @param done fun(result: lsp.ApplyWorkspaceEditResult)
function M.review(params, client, done)
  local edit, encoding = params.edit, client.offset_encoding
  local ok, preview = pcall(M.preview, edit, encoding)
  if not ok then
    return done({ applied = false, failureReason = tostring(preview) .. "; nothing was applied" })
  end
  local why = M.stale(preview)
  if why then
    return done({ applied = false, failureReason = why .. "; nothing was applied" })
  end
  local function apply()
    local result, written = M.apply(preview, edit, encoding)
    if result.applied then
      local summary = M.describe(preview, written)
      applied[client.id] = { who = (params.label or ""):match("%((.-)%)$"), summary = summary }
      last[client.id] = summary
    end
    return result
  end
  if not M.wants_confirmation(edit, client) then
    return done(apply())
  end
  local label = params.label or "Phasewise edit"
  local n = #preview.files
  local prompt = ("%s: apply this change to %d file%s?"):format(label, n, n == 1 and "" or "s")
  local first = preview.files[1] and preview.files[1].path or "edit"
  M.ask(first, M.render(preview, label), prompt, ("Apply this change to %d file%s?"):format(n, n == 1 and "" or "s"),
    function(choice)
    -- the server waits for this answer: it must come even if something here fails
    local answered, result = pcall(function()
      if choice == "Apply" then
        return apply()
      end
      declined[client.id] = true
      vim.notify(("%s: edit cancelled, nothing was applied"):format(label), vim.log.levels.WARN)
      return { applied = false, failureReason = "cancelled by the user" }
    end)
    done(answered and result or { applied = false, failureReason = tostring(result) .. "; nothing was applied" })
  end)
end

--- The keys of the question in the diff's tab page.
M.keys = { apply = "a", cancel = { "c", "q" } }

--- Show the diff `lines` of a change to `path` in a tab page of its own (the whole width, focused,
--- free to scroll and search), the question in its window bar, and call `on_answer` once with
--- "Apply" (`a`) or "Cancel" (`c`, `q`, or closing the diff any way). Fires `User PhasewiseEditShown`
--- with `data = { buf, win, prompt }` once the diff is shown.
--- @param path string the first file of the change (names the buffer)
--- @param lines string[]
--- @param prompt string the question in full (its diff's first line names the change too)
--- @param short string the question in the window bar, before its keys: "Apply this change to 2 files?"
--- @param on_answer fun(choice: "Apply"|"Cancel")
function M.ask(path, lines, prompt, short, on_answer)
  local scratch = require("phasewise.scratch")
  local from = vim.api.nvim_get_current_win()
  local buf, win = scratch.tab(scratch.name("edit", path), lines, "diff")
  local answered = false
  local function answer(choice)
    if answered then
      return
    end
    answered = true
    if vim.api.nvim_win_is_valid(win) and #vim.api.nvim_list_tabpages() > 1 then
      pcall(vim.api.nvim_win_close, win, true)
    end
    if vim.api.nvim_buf_is_valid(buf) then
      pcall(vim.api.nvim_buf_delete, buf, { force = true })
    end
    if vim.api.nvim_win_is_valid(from) then
      vim.api.nvim_set_current_win(from)
    end
    vim.schedule(function() -- out of the key's mapping: the change is applied as from a command
      on_answer(choice)
    end)
  end
  vim.keymap.set("n", M.keys.apply, function()
    answer("Apply")
  end, { buffer = buf, nowait = true, desc = "Phasewise: apply this change" })
  for _, key in ipairs(M.keys.cancel) do
    vim.keymap.set("n", key, function()
      answer("Cancel")
    end, { buffer = buf, nowait = true, desc = "Phasewise: cancel this change" })
  end
  vim.api.nvim_create_autocmd("BufWipeout", {
    buffer = buf,
    once = true,
    callback = function()
      vim.schedule(function() -- closed without an answer: that is no
        answer("Cancel")
      end)
    end,
  })
  local keys = ("%s apply · %s cancel"):format(M.keys.apply, table.concat(M.keys.cancel, "/"))
  vim.wo[win].winbar = (short .. "  " .. keys):gsub("%%", "%%%%")
  vim.cmd.stopinsert()
  vim.api.nvim_exec_autocmds("User", { pattern = "PhasewiseEditShown", modeline = false,
    data = { buf = buf, win = win, prompt = prompt } })
end

--- The `workspace/applyEdit` handler of the Phasewise client (in its config: other servers keep
--- Neovim's). Server requests run in a coroutine, so it can wait for the
--- answer given in the diff's tab page; called outside one, it waits in place.
--- @param params lsp.ApplyWorkspaceEditParams
--- @param ctx lsp.HandlerContext
--- @return lsp.ApplyWorkspaceEditResult
function M.handler(_, params, ctx)
  local client = assert(vim.lsp.get_client_by_id(ctx.client_id))
  local co, is_main = coroutine.running()
  local in_coroutine = co ~= nil and not is_main
  local answer
  M.review(params, client, function(result)
    answer = result
    if in_coroutine and coroutine.status(co) == "suspended" then
      vim.schedule(function()
        coroutine.resume(co)
      end)
    end
  end)
  if answer == nil then
    if in_coroutine then
      coroutine.yield()
    else
      vim.wait(24 * 3600 * 1000, function()
        return answer ~= nil
      end)
    end
  end
  return answer
end

--- True when the user cancelled the edit of client `id`'s current code phase: the phase's
--- failure ("the editor refused the edit") is the user's choice, already said, not an error.
--- @param id integer
--- @return boolean
function M.declined(id)
  return declined[id] == true
end

--- Whether the user cancelled an edit of client `id` since its last phase ended as cancelled,
--- once: the end of the phase whose edit it was takes it (a later cancel is said again).
--- @param id integer
--- @return boolean
function M.take_declined(id)
  local was = declined[id] == true
  declined[id] = nil
  return was
end

--- What the edit applied for client `id`'s phase served by `who` ("coder/glm-sim") did (see
--- `describe`), once: the message that ends the phase says it; nil when no edit was applied.
--- @param id integer
--- @param who string
--- @return string?
function M.take_applied(id, who)
  local change = applied[id]
  if change and (change.who == nil or change.who == who) then
    applied[id] = nil
    return change.summary
  end
  return nil
end

--- What the last edit applied for client `id` did (see `describe`), once: a run's summary says it
--- again, as it covers the message of its code phase's end; nil when none was applied.
--- @param id integer
--- @return string?
function M.take_last(id)
  local change = last[id]
  last[id] = nil
  return change
end

--- A new code phase of client `id` begins: an earlier cancel or edit says nothing about it.
--- @param id integer
function M.forget(id)
  declined[id] = nil
  applied[id] = nil
  last[id] = nil
end

return M
