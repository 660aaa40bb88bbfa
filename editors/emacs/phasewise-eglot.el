;;; phasewise-eglot.el --- Phasewise through Eglot  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: tools, languages
;; URL: https://github.com/phasewise/phasewise

;;; Commentary:

;; Phasewise is a language server that routes each phase of work (plan, code, review) to its
;; own provider and model.  This recipe connects it with Eglot:
;;
;; - `phasewise-eglot-setup' registers "phasewise serve" in `eglot-server-programs';
;; - `phasewise-plan', `phasewise-code', `phasewise-review', `phasewise-run', `phasewise-status',
;;   `phasewise-verify', `phasewise-compare' run the server's commands (asynchronously, on the
;;   region when it is active); the plan fills the *phasewise-plan* buffer as it streams;
;; - `phasewise-phase' runs any phase by name, yours included (completed from the server);
;;   every phase is also one of `eglot-code-actions' at point, its instruction taken from a
;;   "phasewise: ..." comment on or above the line;
;; - problems (a missing key, a rate limit, ...) are Flymake diagnostics and their quick fixes are
;;   `eglot-code-actions'; the client-side ones (set an API key, open the settings) are here.
;;
;; Settings live in `eglot-workspace-configuration' under `:phasewise' (see README.md); the
;; user-level ones, commands that run unasked included, in `phasewise-user-settings'.  The server
;; asks (`window/showMessageRequest', in the minibuffer) before it runs a workspace's command.
;; API keys are read with `read-passwd' and sent to the server in memory, never to disk.

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)

(defgroup phasewise nil
  "Phasewise: each phase of work on its own model, through Eglot."
  :group 'eglot
  :prefix "phasewise-")

(defcustom phasewise-server-command '("phasewise" "serve")
  "How to start the Phasewise language server (stdio)."
  :type '(repeat string))

(defcustom phasewise-eglot-modes '(prog-mode text-mode)
  "Major modes (and the modes derived from them) that Eglot manages with Phasewise."
  :type '(repeat symbol))

(defcustom phasewise-eglot-prefer nil
  "Non-nil: Phasewise comes before Eglot's other servers.
Eglot runs one server per buffer.  With nil, Phasewise manages the buffers
of `phasewise-eglot-modes' that no other server claims; with t, it replaces
the other servers in those modes."
  :type 'boolean)

(defcustom phasewise-request-timeout 600
  "Seconds to wait for a Phasewise command (a phase can take minutes)."
  :type 'integer)

(defcustom phasewise-user-settings nil
  "Phasewise settings that only you may set, as a plist: `:security', `:network',
`:ledgerPath' and `:commands'.
For example (:security (:allowedKeyOrigins [\"https://llm-proxy.corp.example\"])).
A project's .dir-locals.el can set `eglot-workspace-configuration' (Eglot marks it
safe), so Phasewise never takes these from there: the server gets them from
this variable only, which a directory-local setting cannot change.

`:commands' are the named commands phases may run, e.g.
\(:commands (:test \"pytest -q\" :lint \"ruff check .\")): these are declared to the
server as yours, so they run without asking.  Commands in
`eglot-workspace-configuration' are the workspace's: the server asks before
running one (in the minibuffer, see the `window/showMessageRequest' method
below).  The server reads `:commands' when it starts (\\[eglot-reconnect]
after a change)."
  :type 'plist)
(put 'phasewise-user-settings 'risky-local-variable t)

(defconst phasewise--user-level-keys '(:security :network :ledgerPath)
  "Settings that decide where keys may go, how connections are checked and
where Phasewise writes outside the workspace.")

(defvar phasewise--ignored-said nil
  "User-level keys a workspace configuration set, already said to be ignored.")

(defvar phasewise-result-functions nil
  "Abnormal hook run with (COMMAND RESULT) when a Phasewise command answers.")

(defclass phasewise-eglot-server (eglot-lsp-server) ()
  :documentation "Eglot's connection to the Phasewise language server.")

(defconst phasewise-client-commands ["phasewise.setApiKey" "phasewise.openSettings"]
  "The quick fixes' commands this recipe runs itself.
See the `eglot-execute-command' methods below.")

(cl-defmethod eglot-client-capabilities :around ((_server phasewise-eglot-server))
  "Eglot's capabilities, plus what the server should know of this recipe.
It runs the client-side quick-fix commands itself (so the server offers
them, not its own fallbacks) and shows plans itself (so the server writes
no files under .phasewise/plans for it)."
  (let* ((caps (cl-call-next-method))
         (window (copy-sequence (plist-get caps :window))))
    ;; Eglot answers the server's questions (`window/showMessageRequest') but does not say so:
    ;; without this the server cannot ask before it runs a workspace's command
    (unless (plist-member window :showMessage)
      (setq window (plist-put window :showMessage
                              (list :messageActionItem (list :additionalPropertiesSupport :json-false)))))
    (plist-put caps :window window)
    (plist-put caps :experimental
               ;; the set-key command as an Emacs user knows it: the server's messages name it
               (list :phasewise (list :clientCommands phasewise-client-commands
                                      :setKeyCommand "M-x phasewise-set-api-key")))))

(cl-defmethod eglot-initialization-options ((_server phasewise-eglot-server))
  "Declare the `:commands' of `phasewise-user-settings' as the user's own.
They run without asking; any other command (the workspace configuration's)
only once you allowed it."
  (let ((commands (plist-get phasewise-user-settings :commands)))
    (if commands
        (list :userSettings (list :commands commands))
      (cl-call-next-method))))

(cl-defmethod eglot-handle-request
  ((_server phasewise-eglot-server) (_method (eql window/showMessageRequest))
   &key message actions &allow-other-keys)
  "Ask the server's question MESSAGE in the minibuffer, ACTIONS completed.
The server asks before it runs a command from the workspace's configuration:
\"Allow once\", \"Always for this workspace\" or \"Deny\".  Unlike Eglot's own
handler, no answer is the default: an empty answer or \\[keyboard-quit]
answers nothing, and the command does not run."
  (let* ((titles (mapcar (lambda (a) (plist-get a :title)) (append actions nil)))
         (label (condition-case nil
                    (completing-read (concat message "\n(" (mapconcat #'identity titles " · ") ") ")
                                     titles nil t)
                  (quit nil))))
    ;; nil is JSON null here (jsonrpc's `:null-object'); Eglot's `:null' would not serialize
    (and (member label titles) (list :title label))))

(defvar phasewise--keys nil
  "Alist (ENV . KEY) of the keys typed in this session.
Memory only: handed again to a restarted server, never written to disk.")

(defvar phasewise--plan nil
  "What *phasewise-plan* shows: (:uri URI :run-id ID :instruction TEXT :steps S :head H).
S is the lines of the run's steps (a phase that works in steps), in order; H is
the text above the plan (those steps, then the note as `phasewise--note-block'
makes it), or nil.")

;;;###autoload
(defun phasewise-eglot-setup ()
  "Register the Phasewise server with Eglot for `phasewise-eglot-modes'."
  (let ((entry (cons phasewise-eglot-modes (cons 'phasewise-eglot-server phasewise-server-command))))
    (setq eglot-server-programs
          (cl-remove-if (lambda (e) (and (consp (cdr e)) (eq (cadr e) 'phasewise-eglot-server)))
                        eglot-server-programs))
    (add-to-list 'eglot-server-programs entry (not phasewise-eglot-prefer))
    (add-hook 'eglot-connect-hook #'phasewise--resend-keys)))

;;;; The connection and its commands

(defun phasewise--server ()
  "The Phasewise server of the current buffer, or an error saying what to do."
  (let ((server (eglot-current-server)))
    (unless (cl-typep server 'phasewise-eglot-server)
      (user-error "Phasewise does not manage this buffer: run `phasewise-eglot-setup', then M-x eglot"))
    server))

(defun phasewise--uri ()
  "The current buffer's file as a URI."
  (if (fboundp 'eglot-path-to-uri)
      (eglot-path-to-uri buffer-file-name)
    (eglot--path-to-uri buffer-file-name)))

(defun phasewise--arg (&rest props)
  "A command's argument: PROPS (nil values left out), :uri, :range.
The range is the active region's, if any."
  (let ((arg (append (list :uri (phasewise--uri)) (cl-loop for (k v) on props by #'cddr
                                                           when v append (list k v)))))
    (if (use-region-p)
        (append arg (list :range (list :start (eglot--pos-to-lsp-position (region-beginning))
                                       :end (eglot--pos-to-lsp-position (region-end)))))
      arg)))

(defun phasewise--execute (server command arg on-result)
  "Run COMMAND with ARG on SERVER without blocking.
ON-RESULT is called with the answer."
  (jsonrpc-async-request
   server :workspace/executeCommand (list :command command :arguments (vector arg))
   :timeout phasewise-request-timeout
   :success-fn (lambda (result)
                 (funcall on-result result)
                 (run-hook-with-args 'phasewise-result-functions command result))
   :error-fn (lambda (err) (message "Phasewise %s failed: %s" command (plist-get err :message)))
   :timeout-fn (lambda () (message "Phasewise %s: no answer in %s s" command phasewise-request-timeout))))

(defun phasewise--plain (text)
  "TEXT, a server's Markdown, as plain text for the echo area.
Code spans lose their backticks, as in the server's own messages and VS Code's
notifications: a note, a failed phase's problem."
  (replace-regexp-in-string "`\\([^`]*\\)`" "\\1" text t))

(defun phasewise--warn (text)
  "Say TEXT as a warning: in the echo area, and logged in *Warnings*.
As Eglot warns: the *Warnings* buffer is not popped up."
  (message "Phasewise: %s" text)
  (let ((warning-minimum-level :error))
    (display-warning 'phasewise text :warning)))

(defun phasewise--report-notes (result)
  "Warn about the note of a phase RESULT that is still ok (of a run: each phase's).
A plan or review cut at the output limit has one: it names the setting that
raises the limit."
  (cl-loop for r across (or (plist-get result :phases) (vector result))
           for note = (plist-get r :note)
           when (and (eq (plist-get r :ok) t) (stringp note) (not (string-blank-p note)))
           do (phasewise--warn (phasewise--plain note))))

(defun phasewise--note-block (note)
  "NOTE as a buffer shows it above a phase's text, or nil without one.
A Markdown quote, then a blank line, as the server's plan document has it."
  (when (and (stringp note) (not (string-blank-p note)))
    (concat (mapconcat (lambda (line) (concat "> " line)) (split-string (string-trim note) "\n") "\n")
            "\n\n")))

(defun phasewise--report (result)
  "Say how a phase RESULT went; return non-nil when it succeeded."
  (let ((err (plist-get result :error)))
    (if (eq (plist-get result :ok) t)
        (progn (message "Phasewise %s: done (%s/%s)" (plist-get result :phase)
                        (plist-get result :provider) (plist-get result :model))
               (phasewise--report-notes result)
               t)
      (message "Phasewise: %s%s" (phasewise--plain (or (plist-get err :message) "failed"))
               (if (equal (plist-get err :kind) "cancelled") "" " (fixes: M-x eglot-code-actions)"))
      nil)))

(defun phasewise--show-result (result &optional uri)
  "Show any command's RESULT: a phase result, or a report as JSON.
URI is the document a phase ran on."
  (if (plist-member result :provider)
      (phasewise--show-phase result uri)
    (phasewise--show-report "*phasewise-report*" (phasewise--json result))))

(defun phasewise--show-phase (result &optional uri)
  "Say how a phase RESULT went and show what it holds, by what it holds.
Findings are in Flymake already, an edit came through `workspace/applyEdit';
text (a plan, or any plan-kind phase of yours) goes to *phasewise-plan* for
the plan phase of the document URI, else to *phasewise-PHASE*."
  (when (phasewise--report result)
    (let ((phase (plist-get result :phase))
          (text (plist-get result :text))
          (findings (plist-get result :findings)))
      (cond ((> (length findings) 0)
             (message "Phasewise %s: %d finding(s), see M-x flymake-show-buffer-diagnostics"
                      phase (length findings)))
            ((plist-member result :applied) nil)
            ((and (stringp text) (not (string-blank-p text)))
             (if (equal phase "plan")
                 (let ((run (plist-get result :runId)))
                   ;; the steps shown as they came, else the ones the result lists
                   (setq phasewise--plan
                         (list :uri uri :run-id run
                               :steps (or (and (equal (plist-get phasewise--plan :run-id) run)
                                               (plist-get phasewise--plan :steps))
                                          (mapcar #'phasewise--step-line (plist-get result :steps)))))
                   (phasewise--plan-set text (plist-get result :note)))
               (phasewise--show-report (format "*phasewise-%s*" phase)
                                       (concat (phasewise--note-block (plist-get result :note)) text))))))))

;;;; Plan buffers

(defun phasewise--plan-buffer ()
  "The plan buffer, shown in another window."
  (let ((buf (get-buffer-create "*phasewise-plan*")))
    (with-current-buffer buf
      (unless (derived-mode-p 'markdown-mode 'text-mode)
        (if (fboundp 'markdown-mode) (markdown-mode) (text-mode))))
    (display-buffer buf '(nil (inhibit-same-window . t)))
    buf))

(defun phasewise--steps-block (lines)
  "Step LINES as a buffer shows them above a phase's text, or nil without any."
  (when lines (concat (mapconcat #'identity lines "\n") "\n\n")))

(defun phasewise--insert-head (steps note)
  "Insert the STEPS block (in the `shadow' face) then the NOTE block (`warning')."
  (dolist (part (list (cons steps 'shadow) (cons note 'warning)))
    (when (car part)
      (let ((start (point)))
        (insert (car part))
        (let ((overlay (make-overlay start (- (point) 2)))) ; the lines, not the blank line after them
          (overlay-put overlay 'phasewise-note t)
          (overlay-put overlay 'face (cdr part)))))))

(defun phasewise--plan-set (text &optional note)
  "Replace the plan buffer's text with TEXT, under the run's steps and NOTE.
The steps (a plan that works in steps) come from `phasewise--plan'; NOTE (a plan
cut at the output limit has one) is shown as `phasewise--note-block' makes it,
in the `warning' face."
  (let* ((steps (phasewise--steps-block (plist-get phasewise--plan :steps)))
         (block (phasewise--note-block note)))
    (setq phasewise--plan (plist-put phasewise--plan :head (concat steps block)))
    (with-current-buffer (phasewise--plan-buffer)
      (let ((inhibit-read-only t))
        (remove-overlays (point-min) (point-max) 'phasewise-note t)
        (erase-buffer)
        (phasewise--insert-head steps block)
        (insert text)))))

(defun phasewise--plan-add-step (line)
  "Add the step LINE to the steps above the plan, the text under them kept."
  (let ((old (plist-get phasewise--plan :head)))
    (setq phasewise--plan (plist-put phasewise--plan :steps
                                     (append (plist-get phasewise--plan :steps) (list line))))
    (with-current-buffer (phasewise--plan-buffer)
      (let* ((inhibit-read-only t)
             (all (buffer-string))
             (text (if (and old (string-prefix-p old all)) (substring all (length old)) all))
             (steps (phasewise--steps-block (plist-get phasewise--plan :steps))))
        (setq phasewise--plan (plist-put phasewise--plan :head steps))
        (remove-overlays (point-min) (point-max) 'phasewise-note t)
        (erase-buffer)
        (phasewise--insert-head steps nil)
        (insert text)))))

(defun phasewise--plan-for (uri)
  "The plan shown for URI (with the user's edits), or nil.
The steps and the note above it stay out, unless the user edited them: they
are the user's to read, not the code phase's."
  (let ((buf (get-buffer "*phasewise-plan*"))
        (block (plist-get phasewise--plan :head)))
    (when (and buf (equal (plist-get phasewise--plan :uri) uri))
      (let ((text (with-current-buffer buf (buffer-string))))
        (when (and block (string-prefix-p block text))
          (setq text (substring text (length block))))
        (unless (string-blank-p text) text)))))

(defun phasewise--say-ignored (key)
  "Warn once that the workspace set the user-level KEY, which is ignored."
  (unless (memq key phasewise--ignored-said)
    (push key phasewise--ignored-said)
    (display-warning
     'phasewise
     (format (concat "Ignored phasewise.%s from the workspace configuration (which a project's "
                     ".dir-locals.el can set): only `phasewise-user-settings' sets it; the default is used")
             (substring (symbol-name key) 1))
     :warning)))

(defun phasewise--user-level-only (section)
  "SECTION (the workspace's `phasewise' plist) with `phasewise--user-level-keys' from
`phasewise-user-settings' only."
  (let ((out nil)
        (rest (and (consp section) section)))
    (while rest
      (if (memq (car rest) phasewise--user-level-keys)
          (phasewise--say-ignored (car rest))
        (setq out (nconc out (list (car rest) (cadr rest)))))
      (setq rest (cddr rest)))
    (dolist (key phasewise--user-level-keys)
      (when (plist-member phasewise-user-settings key)
        (setq out (nconc out (list key (plist-get phasewise-user-settings key))))))
    out))

(cl-defmethod eglot-handle-request :around
  ((_server phasewise-eglot-server) (_method (eql workspace/configuration)) &key items)
  "Answer the server's settings pull with the user-level settings from `phasewise-user-settings'."
  (let ((answer (cl-call-next-method)))
    (apply #'vector
           (cl-loop for item across (if (vectorp items) items (vconcat items))
                    for value across answer
                    collect (if (equal (plist-get item :section) "phasewise")
                                (phasewise--user-level-only value)
                              value)))))

(cl-defmethod eglot-handle-notification
  ((_server phasewise-eglot-server) (_method (eql phasewise/streamText))
   &key runId phase uri text &allow-other-keys)
  "Plan TEXT as it streams, for the plan of URI in run RUNID.
Text of other phases (PHASE) is not shown."
  (when (equal phase "plan")
    (if (and (equal (plist-get phasewise--plan :run-id) runId) (get-buffer "*phasewise-plan*"))
        (with-current-buffer (phasewise--plan-buffer)
          (goto-char (point-max))
          (insert text))
      ;; a new plan: ours once it streams, or one started elsewhere (a retry, a run)
      (setq phasewise--plan
            (list :uri uri :run-id runId
                  :instruction (and (equal (plist-get phasewise--plan :uri) uri)
                                    (plist-get phasewise--plan :instruction))))
      (phasewise--plan-set text))))

(defun phasewise--step-line (step)
  "A STEP of `phasewise/step' as a Markdown list item.
As in the other plugins: `- 4/25 search_files \"x\": 2 matches · 3 ms', a failed
step marked ✗."
  (let ((of (plist-get step :of)) (ms (plist-get step :ms)))
    (format "- %s%s %s%s%s" (plist-get step :step) (if (numberp of) (format "/%s" of) "")
            (if (eq (plist-get step :ok) t) "" "✗ ") (plist-get step :summary)
            (if (numberp ms) (format " · %d ms" (floor (+ ms 0.5))) ""))))

(defvar-local phasewise--steps-run nil
  "The run whose steps this steps buffer lists.")

(defun phasewise--steps-buffer (phase)
  "The name of the buffer listing PHASE's steps (not the plan's: above the plan)."
  (format "*phasewise-%s steps*" phase))

(cl-defmethod eglot-handle-notification
  ((_server phasewise-eglot-server) (_method (eql phasewise/step))
   &key runId phase uri step &allow-other-keys)
  "A STEP of a phase that works in steps, as it ends (run RUNID of PHASE on URI).
The plan's steps are listed above the plan in *phasewise-plan*; any other
phase's in its own buffer, shown at its first step (`phasewise--steps-buffer')."
  (when (and (stringp uri) (listp step) step)
    (let ((line (phasewise--step-line step)))
      (if (equal phase "plan")
          (progn
            (unless (equal (plist-get phasewise--plan :run-id) runId)
              (setq phasewise--plan
                    (list :uri uri :run-id runId
                          :instruction (and (equal (plist-get phasewise--plan :uri) uri)
                                            (plist-get phasewise--plan :instruction))))
              (phasewise--plan-set ""))
            (phasewise--plan-add-step line))
        (let ((buf (get-buffer-create (phasewise--steps-buffer phase))))
          (with-current-buffer buf
            (let ((inhibit-read-only t))
              (unless (equal phasewise--steps-run runId)
                (erase-buffer)
                (unless (derived-mode-p 'markdown-mode 'text-mode)
                  (if (fboundp 'markdown-mode) (markdown-mode) (text-mode)))
                (setq phasewise--steps-run runId)
                (insert (format "# %s · %s\n\n" phase (file-name-nondirectory (url-unhex-string uri)))))
              (goto-char (point-max))
              (insert line "\n")))
          (display-buffer buf '(nil (inhibit-same-window . t))))))))

(defun phasewise--finish-steps (_command result)
  "Say under a phase's steps how its RESULT ended (of a run: each phase's).
Only for a phase whose steps went to `phasewise--steps-buffer'."
  (cl-loop
   for r across (or (plist-get result :phases) (vector result))
   for buf = (get-buffer (phasewise--steps-buffer (plist-get r :phase)))
   when (and buf (equal (buffer-local-value 'phasewise--steps-run buf) (plist-get r :runId)))
   do (with-current-buffer buf
        (let ((inhibit-read-only t)
              (files (length (plist-get r :files)))
              (text (plist-get r :text)))
          (goto-char (point-max))
          (insert "\n"
                  (cond ((not (eq (plist-get r :ok) t))
                         (format "_%s failed_: %s" (plist-get r :phase)
                                 (plist-get (plist-get r :error) :message)))
                        ((plist-member r :applied)
                         (format "_%s (%s/%s): %s, %d file%s_" (plist-get r :phase) (plist-get r :provider)
                                 (plist-get r :model) (if (eq (plist-get r :applied) t) "applied" "not applied")
                                 files (if (= files 1) "" "s")))
                        (t (format "_%s (%s/%s)_" (plist-get r :phase) (plist-get r :provider)
                                   (plist-get r :model))))
                  "\n"
                  (or (phasewise--note-block (plist-get r :note)) "")
                  (if (and (stringp text) (not (string-blank-p text))) (concat "\n" text "\n") ""))
          (setq phasewise--steps-run nil)))))

(add-hook 'phasewise-result-functions #'phasewise--finish-steps)

(defun phasewise-plan (instruction)
  "Write a plan for INSTRUCTION about this buffer (or the region).
The plan fills the *phasewise-plan* buffer as it streams."
  (interactive (list (read-string "Phasewise plan: ")))
  (setq phasewise--plan (list :uri (phasewise--uri) :run-id nil :instruction instruction))
  (phasewise--plan-set "")
  (phasewise--execute (phasewise--server) "phasewise.plan"
                      (phasewise--arg :instruction instruction)
                      (lambda (result)
                        (when (phasewise--report result)
                          (phasewise--plan-set (plist-get result :text) (plist-get result :note))))))

(defun phasewise-code (instruction)
  "Change this buffer (or the region) following INSTRUCTION.
The plan in *phasewise-plan* (edits included) goes with it, if it is this
buffer's; kill that buffer to code without it."
  (interactive
   (list (read-string "Phasewise code: "
                      (and (equal (plist-get phasewise--plan :uri) (phasewise--uri))
                           (plist-get phasewise--plan :instruction)))))
  (phasewise--execute (phasewise--server) "phasewise.code"
                      (phasewise--arg :instruction instruction
                                      :plan (phasewise--plan-for (phasewise--uri)))
                      #'phasewise--report))

(defun phasewise-review (&optional instruction)
  "Review this buffer (or the region), with an optional INSTRUCTION.
The findings become Flymake diagnostics."
  (interactive (list (read-string "Phasewise review (optional): ")))
  (phasewise--execute (phasewise--server) "phasewise.review"
                      (phasewise--arg :instruction (and instruction (not (string-blank-p instruction))
                                                        instruction))
                      (lambda (result)
                        (when (phasewise--report result)
                          (message "Phasewise review: %d finding(s)" (length (plist-get result :findings)))))))

(defun phasewise-run (instruction)
  "Plan, code and review INSTRUCTION in one go, each phase on its own route."
  (interactive (list (read-string "Phasewise run: ")))
  (phasewise--execute (phasewise--server) "phasewise.run" (phasewise--arg :instruction instruction)
                      (lambda (result)
                        (when-let ((plan (plist-get result :plan)))
                          (phasewise--plan-set
                           plan (plist-get (cl-find plan (plist-get result :phases) :test #'equal :from-end t
                                                    :key (lambda (r) (plist-get r :text)))
                                           :note)))
                        (if (eq (plist-get result :ok) t)
                            (progn (message "Phasewise run: done")
                                   (phasewise--report-notes result))
                          (phasewise--report result)))))

(defun phasewise--phase-names (server uri)
  "The phases SERVER knows for URI, from `phasewise.status'.
The built-in three and the phases of your own, in the server's order."
  (let ((status (jsonrpc-request server :workspace/executeCommand
                                 (list :command "phasewise.status" :arguments (vector (list :uri uri)))
                                 :timeout 10)))
    (cl-loop for view across (plist-get status :phases) collect (plist-get view :phase))))

(defun phasewise-phase (phase &optional instruction)
  "Run PHASE, any phase by name (yours included), on the buffer or region.
INSTRUCTION may be empty for a review-kind phase.  Interactively, PHASE is
read with completion from the server's phases.  Its text is shown in
*phasewise-PHASE* (the plan's in *phasewise-plan*); findings are Flymake
diagnostics; an edit comes as for `phasewise-code'."
  (interactive
   (let* ((names (phasewise--phase-names (phasewise--server) (phasewise--uri)))
          (phase (completing-read "Phasewise phase: " names nil t)))
     (list phase (read-string (format "Phasewise %s: " phase)))))
  (let ((uri (phasewise--uri)))
    (phasewise--execute (phasewise--server) "phasewise.phase"
                        (phasewise--arg :phase phase
                                        :instruction (and instruction (not (string-blank-p instruction))
                                                          instruction))
                        (lambda (result) (phasewise--show-phase result uri)))))

(defun phasewise-compare (phase models instruction)
  "Run PHASE for INSTRUCTION on each of MODELS (comma-separated).
The answers are shown side by side."
  (interactive (list (completing-read "Phase: " '("plan" "code" "review"))
                     (read-string "Models (provider/model, comma-separated): ")
                     (read-string "Instruction: ")))
  (phasewise--execute (phasewise--server) "phasewise.compare"
                      (phasewise--arg :instruction instruction :phase phase
                                      :models (vconcat (split-string models "," t "[ \t]+")))
                      (lambda (report)
                        (phasewise--show-report "*phasewise-compare*"
                                                (or (plist-get report :markdown) (phasewise--json report))))))

(defun phasewise-verify ()
  "Call each provider in use for real: key accepted, model served, latency."
  (interactive)
  (phasewise--execute (phasewise--server) "phasewise.verify" (list :uri (phasewise--uri))
                      (lambda (report) (phasewise--show-report "*phasewise-verify*" (phasewise--json report)))))

(defun phasewise-status ()
  "Show every phase's route: provider, model, base URL, and its key.
Keys are shown masked, as the server reports them."
  (interactive)
  (phasewise--execute
   (phasewise--server) "phasewise.status" (list :uri (phasewise--uri))
   (lambda (status)
     (phasewise--show-report
      "*phasewise-status*"
      (mapconcat
       #'identity
       (append
        (list (format "Phasewise %s" (plist-get status :version)))
        (cl-loop for issue across (plist-get status :settingsIssues)
                 collect (format "settings: %s: %s" (plist-get issue :path) (plist-get issue :message)))
        (cl-loop for view across (plist-get status :phases)
                 collect (format "%s -> %s/%s (%s)%s%s" (plist-get view :phase) (plist-get view :provider)
                                 (plist-get view :model) (plist-get view :baseUrl)
                                 (mapconcat (lambda (k)
                                              (format "; key %s %s" (plist-get k :env)
                                                      (if (eq (plist-get k :present) t)
                                                          (plist-get k :masked) "missing")))
                                            (plist-get view :keys) "")
                                 (if-let ((p (plist-get view :problem)))
                                     (concat "\n  " (plist-get p :message)) ""))))
       "\n")))))

(defun phasewise--json (value)
  "VALUE as pretty JSON."
  (with-temp-buffer
    (insert (jsonrpc--json-encode value))
    (ignore-errors (json-pretty-print-buffer))
    (buffer-string)))

(defun phasewise--show-report (name text)
  "Show TEXT in the buffer NAME."
  (with-current-buffer (get-buffer-create name)
    (let ((inhibit-read-only t))
      (erase-buffer)
      (insert text))
    (goto-char (point-min))
    (display-buffer (current-buffer))))

;;;; Client-side commands of the quick fixes, and keys

(defun phasewise-set-api-key (env &optional provider server)
  "Read the API key held by the variable ENV and hand it to SERVER.
PROVIDER names who the key is for.  The key stays in memory only."
  (interactive (list (read-string "Key variable (e.g. ANTHROPIC_API_KEY): ")))
  (let ((key (read-passwd (format "API key for %s (%s, kept in memory): " (or provider "the provider") env)))
        (server (or server (phasewise--server))))
    (unless (string-blank-p key)
      (setf (alist-get env phasewise--keys nil nil #'equal) key)
      (jsonrpc-notify server :phasewise/setKeys (list :keys (list (intern (concat ":" env)) key)))
      (message "Phasewise: %s set in memory for this session; run the phase again" env))))

(defun phasewise--resend-keys (server)
  "Give a (re)started SERVER the keys typed earlier in this session."
  (when (and phasewise--keys (cl-typep server 'phasewise-eglot-server))
    (jsonrpc-notify server :phasewise/setKeys
                    (list :keys (cl-loop for (env . key) in phasewise--keys
                                         append (list (intern (concat ":" env)) key))))))

(cl-defmethod eglot-execute-command ((server phasewise-eglot-server) command arguments)
  "Run COMMAND with ARGUMENTS on SERVER asynchronously.
A retried phase can take minutes: Eglot's own call would block and time out."
  (let ((arg (and (> (length arguments) 0) (aref arguments 0))))
    (phasewise--execute server (format "%s" command) arg
                        (lambda (result) (phasewise--show-result result (plist-get arg :uri))))))

(cl-defmethod eglot-execute-command
  ((server phasewise-eglot-server) (_command (eql phasewise.setApiKey)) arguments)
  "The \"Phasewise: Set API Key…\" quick fix, ARGUMENTS [{env, provider}], on SERVER."
  (let ((arg (aref arguments 0)))
    (phasewise-set-api-key (plist-get arg :env) (plist-get arg :provider) server)))

(cl-defmethod eglot-execute-command
  ((_server phasewise-eglot-server) (_command (eql phasewise.openSettings)) arguments)
  "The \"Open the settings\" quick fix, ARGUMENTS [{setting}].
Says where the setting lives and shows its current value."
  (let* ((setting (or (plist-get (aref arguments 0) :setting) "phasewise"))
         (path (mapcar (lambda (part) (intern (concat ":" part))) (split-string setting "\\.")))
         (config (if (functionp eglot-workspace-configuration) nil eglot-workspace-configuration))
         (value (cl-reduce (lambda (plist key) (and (listp plist) (plist-get plist key))) path
                           :initial-value config)))
    (message "Phasewise: `%s' is set in `eglot-workspace-configuration' as %s; current value: %S"
             setting
             (cl-reduce (lambda (key inner) (format "(%s %s)" key inner)) path :from-end t :initial-value "...")
             value)))

(provide 'phasewise-eglot)
;;; phasewise-eglot.el ends here
