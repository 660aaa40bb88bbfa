-- Phases that work in steps (issue 21), as a Neovim user meets them: a plan that looks around the
-- project lists its steps above the plan while they happen, and the plan handed on to the code
-- phase is the plan alone; a code phase that searches, reads and edits two files lists its steps
-- in its own buffer beside the file while they happen, then shows its one change as a diff and
-- asks; applied, the buffer says so under the steps.
local T = dofile(vim.fs.joinpath(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2)), "nvim_common.lua"))

T.run(function()
  local obs = T.observed
  require("phasewise").setup({ cmd = T.input.cmd, settings = { phasewise = T.input.settings } })
  local buf, client = T.open(T.input.file)

  local results = T.record_results()

  -- each step as the plugin showed it: the buffer it went to, that buffer's text right after, and
  -- whether the phase had answered yet (it had not: the steps show while it works)
  local scratch = require("phasewise.scratch")
  local on_step = scratch.on_step
  obs.steps = {}
  scratch.on_step = function(params)
    on_step(params)
    local name = params.phase == "plan" and "phasewise://plan/" or ("phasewise://" .. params.phase .. "/")
    local b = T.find_buf(name)
    table.insert(obs.steps, {
      phase = params.phase,
      step = params.step,
      buffer = b ~= -1 and vim.api.nvim_buf_get_name(b) or vim.NIL,
      text = b ~= -1 and T.text(b) or vim.NIL,
      shown = b ~= -1 and vim.fn.bufwinid(b) ~= -1,
      answered = #results,
    })
  end

  local function phase(name, instruction)
    local before = #results
    vim.cmd(("Phasewise %s %s"):format(name, instruction))
    T.wait("the " .. name .. " phase", function()
      return #results > before and T.idle(client)
    end, 30000)
    return results[#results]
  end

  local plan = phase("plan", T.input.instruction)
  obs.plan = { ok = plan.ok, steps = plan.steps or {}, text = plan.text }
  local plan_buf = T.find_buf("phasewise://plan/")
  obs.plan_buffer = T.text(plan_buf)
  obs.plan_for = scratch.plan_for(vim.uri_from_bufnr(buf))
  obs.current_after_plan = vim.api.nvim_get_current_buf() == buf
  vim.api.nvim_win_close(vim.fn.bufwinid(plan_buf), true) -- its plan is not the code phase's here

  vim.ui.input = function(_, on_confirm)
    on_confirm(T.input.instruction)
  end
  T.on_edit_question(function(items, opts, on_choice)
    local view = T.find_buf("phasewise://code/")
    vim.cmd.redraw()
    obs.asked = { prompt = opts.prompt, items = items, screen = T.screen(),
                  steps_buffer = view ~= -1 and T.text(view) or vim.NIL }
    vim.schedule(function()
      on_choice("Apply")
    end)
  end)
  local code = phase("code", T.input.instruction)
  obs.code = { ok = code.ok, applied = code.applied, steps = code.steps or {}, text = code.text,
               files = vim.tbl_map(function(f) return f.path end, code.files or {}) }
  local view = T.find_buf("phasewise://code/")
  obs.code_buffer = view ~= -1 and T.text(view) or vim.NIL
  obs.code_buffer_name = view ~= -1 and vim.api.nvim_buf_get_name(view) or vim.NIL
  obs.current_after_code = vim.api.nvim_get_current_buf() == buf
  obs.document = T.text(buf)
  vim.cmd("redraw")
  obs.screen = T.screen()
end)
