" Vim 9 with ALE and no Phasewise plugin: the server is one more LSP linter for Python. Run as
" `vim -Nu vim_ale.vim FILE` inside tmux (a real terminal, so the screen can be captured).
" Input: JSON in $PHASEWISE_TEST_INPUT {cmd, settings, comment_line, bare_line, tmux,
" screens}. Output: what was observed, as JSON in $PHASEWISE_TEST_OUT, then the tmux channel
" `phasewise-done` is signalled. Waiting is for conditions (`:sleep` lets ALE's channel callbacks
" run), never a fixed delay.
set nocompatible
set noswapfile nobackup nowritebackup viminfo= shortmess+=I
set laststatus=2 cmdheight=2
let s:input = json_decode($PHASEWISE_TEST_INPUT)
let s:obs = {'screens': {}}

filetype on
packadd ale
let g:ale_linters = {'python': ['phasewise']}
let g:ale_linters_explicit = 1
let g:ale_lint_on_text_changed = 'never'
let g:ale_echo_cursor = 1
let g:ale_set_loclist = 1
let g:ale_lsp_show_message_severity = 'information' " ALE shows only errors by default
" as docs/editors.md has it (the root: the folder with pyproject.toml)
call ale#linter#Define('python', {
\   'name': 'phasewise',
\   'lsp': 'stdio',
\   'executable': s:input.cmd[0],
\   'command': join(map(copy(s:input.cmd), 'shellescape(v:val)'), ' '),
\   'project_root': function('ale#python#FindProjectRoot'),
\   'initialization_options': {'phasewise': s:input.settings},
\   'lsp_config': {'phasewise': s:input.settings},
\})

" Wait for {cond} (an expression) up to {ms}, or throw naming {what}.
function! s:Wait(what, cond, ms) abort
  let l:waited = 0
  while !eval(a:cond)
    if l:waited >= a:ms
      throw 'timed out waiting for ' . a:what
    endif
    sleep 20m
    let l:waited += 20
  endwhile
endfunction

" What the user sees right now, as tmux draws it (redrawn first, unless a prompt is up).
function! s:Screen(name, ...) abort
  if !get(a:, 1, 0)
    redraw!
  endif
  let s:obs.screens[a:name] = system('tmux -L ' . s:input.tmux . ' capture-pane -p -t phasewise')
  return s:obs.screens[a:name]
endfunction

" What the server sent besides answers (method names, and the messages it showed), as ALE got it.
let s:conn = v:null
let s:methods = []
let s:shown = []
let s:edit_counts = []
function! s:OnServerMessage(conn_id, message) abort
  let l:method = get(a:message, 'method', '')
  if !empty(l:method)
    call add(s:methods, l:method)
  endif
  if l:method is# 'window/showMessage'
    call add(s:shown, a:message.params)
  endif
  if l:method is# 'workspace/applyEdit'  " how many TextEdits each document's edit carries
    let l:edit = a:message.params.edit
    call add(s:edit_counts, map(copy(get(l:edit, 'documentChanges', [])), 'len(get(v:val, "edits", []))')
    \ + map(values(get(l:edit, 'changes', {})), 'len(v:val)'))
  endif
endfunction

" The code actions ALE gets at {line} (1-based), column 5, through its menu callback.
let s:listed = v:null
function! s:OnListed(data, items) abort
  if s:conn is v:null && has_key(a:data, 'connection_id')
    let s:conn = a:data.connection_id
    call ale#lsp#RegisterCallback(s:conn, function('s:OnServerMessage'))
  endif
  let s:listed = map(copy(a:items), {_, item -> {
  \   'title': item[1].title,
  \   'kind': get(item[1], 'kind', ''),
  \   'command': type(get(item[1], 'command')) == v:t_dict ? item[1].command.command : '',
  \ }})
endfunction
function! s:Actions(line) abort
  call cursor(a:line, 5)
  let s:listed = v:null
  call ale#codefix#Execute(0, function('s:OnListed'))
  call s:Wait('the code actions at line ' . a:line, 's:listed isnot v:null', 20000)
  return s:listed
endfunction

" :ALECodeAction as the user runs it: its numbered menu is captured from the screen and the
" entry whose title starts with {title} is typed in.
let s:menu = ''
let s:picked = 0
function! s:PickWhenAsked(title, timer) abort
  if mode() !=# 'c'
    return
  endif
  call timer_stop(a:timer)
  let s:menu = s:Screen('menu', 1)
  let l:found = matchlist(s:menu, '\v(\d+)\) \V' . escape(a:title, '\'))
  let s:picked = empty(l:found) ? -1 : str2nr(l:found[1])
  call feedkeys((s:picked > 0 ? s:picked : '') . "\<CR>", 'nt')
endfunction
" With a third argument {last}: over lines {line}..{last}, as :'<,'>ALECodeAction after selecting them.
function! s:CodeAction(line, title, ...) abort
  call cursor(a:line, 5)
  let s:picked = 0
  call timer_start(20, function('s:PickWhenAsked', [a:title]), {'repeat': -1})
  if a:0
    call setpos("'<", [0, a:line, 1, 0])
    call setpos("'>", [0, a:1, 1, 0])
    '<,'>ALECodeAction
  else
    ALECodeAction
  endif
  call s:Wait('the code action menu', 's:picked != 0 && mode() ==# "n"', 20000)
  " the menu scrolled the screen: redraw, or the server's next message waits for Enter
  redraw!
  return s:picked
endfunction

function! s:Main() abort
  let l:buf = bufnr('')
  let s:obs.filetype = &filetype
  let s:obs.linters = map(ale#linter#Get(&filetype), 'v:val.name')

  " under the `# phasewise:` comment, then on a line with no comment near it
  let s:obs.actions = s:Actions(s:input.comment_line)
  let s:obs.bare_actions = s:Actions(s:input.bare_line)

  " :ALECodeAction, the plan picked from ALE's menu; the server writes it and says where
  let s:obs.plan_pick = s:CodeAction(s:input.comment_line, 'Phasewise plan (')
  let s:obs.menu = s:menu
  call s:Wait('the plan file', 'filereadable(s:input.plan_path)', 30000)
  call s:Wait('the message naming it', '!empty(s:shown)', 20000)
  let s:obs.shown = s:shown
  call s:Screen('after_plan', 1) " not redrawn: the message ALE echoed is on the command line
  " a generic client opens the plan itself
  execute 'split' fnameescape(s:input.plan_path)
  let s:obs.plan_buffer = join(getline(1, '$'), "\n")
  call s:Screen('plan_open')
  close

  " the review, picked the same way: its findings are ALE's diagnostics (the location list)
  let s:obs.review_pick = s:CodeAction(s:input.comment_line, 'Phasewise review (')
  call s:Wait('the review findings', '!empty(filter(ale#engine#GetLoclist(' . l:buf . '), "v:val.linter_name ==# ''phasewise''"))', 30000)
  let s:obs.loclist = map(filter(copy(ale#engine#GetLoclist(l:buf)), 'v:val.linter_name ==# "phasewise"'),
  \ {_, d -> {'lnum': d.lnum, 'text': d.text, 'type': d.type, 'code': get(d, 'code', '')}})
  call cursor(s:obs.loclist[0].lnum, 1)
  call s:Screen('review')

  " the code action: ALE applies the server's workspace/applyEdit to the buffer
  let s:obs.code_pick = s:CodeAction(s:input.comment_line, 'Phasewise code (')
  call s:Wait('the code edit', 'join(getline(1, "$"), "\n") =~# "def read_file("', 30000)
  let s:obs.text_after_code = join(getline(1, '$'), "\n")
  let s:obs.modified = &modified ? v:true : v:false
  call s:Screen('after_code')
  " the code action again over the lines from the comment to the end: two changes far apart
  let s:obs.selection_pick = s:CodeAction(s:input.comment_line - 1, 'Phasewise code (', line('$'))
  call s:Wait('the second code edit', 'len(s:edit_counts) == 2 && getline("$") =~# "read_file("', 30000)
  let s:obs.text_after_selection = join(getline(1, '$'), "\n")
  let s:obs.lsp_errors = get(g:, 'ale_lsp_error_messages', {})
  let s:obs.methods = s:methods
  let s:obs.edit_counts = s:edit_counts
endfunction

function! s:Finish() abort
  try
    call s:Main()
  catch
    let s:obs.error = v:exception . ' at ' . v:throwpoint
  endtry
  let s:obs.all_messages = execute('messages')
  call writefile([json_encode(s:obs)], $PHASEWISE_TEST_OUT)
  call system('tmux -L ' . s:input.tmux . ' wait-for -S phasewise-done')
  qall!
endfunction

autocmd VimEnter * ++once call timer_start(0, {-> s:Finish()})
