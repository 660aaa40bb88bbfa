;;; emacs_phases.el --- phases by name and as Eglot code actions, in `emacs -Q --batch'  -*- lexical-binding: t; -*-

;; Input: JSON in $PHASEWISE_TEST_INPUT {recipe, cmd, settings, file, comment_line, bare_line}.
;; Output: what was observed, as JSON in $PHASEWISE_TEST_OUT.  Waiting is for conditions
;; (process output), never a sleep.  Exits 1 on failure.

(require 'package)
(add-to-list 'package-directory-list "/usr/share/emacs/site-lisp/elpa") ; Debian's elpa-eglot
(package-initialize)
(require 'eglot)
(require 'json)

(defvar pw-input (json-parse-string (getenv "PHASEWISE_TEST_INPUT") :object-type 'plist :array-type 'list))
(defvar pw-observed nil "Alist of what was observed.")
(defvar pw-results nil "(COMMAND . RESULT) answers, newest first.")
(defvar pw-text-edit-counts nil "How many TextEdits each `eglot--apply-text-edits' got, newest first.")

(defun pw-observe (key value) (push (cons key value) pw-observed))

(defun pw-wait (what pred &optional timeout)
  "Process events until PRED holds, or fail naming WHAT after TIMEOUT seconds."
  (let ((deadline (+ (float-time) (or timeout 20))))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (or (funcall pred) (error "Timed out waiting for %s" what))))

(defun pw-call (command thunk)
  "Call THUNK, which runs COMMAND; wait for its answer and return it."
  (let ((before (length pw-results)))
    (funcall thunk)
    (pw-wait command (lambda () (and (> (length pw-results) before) (equal (caar pw-results) command))))
    (cdar pw-results)))

(defun pw-goto-line (line)
  "Point on the fifth column of LINE (1-based), inside its first word."
  (goto-char (point-min))
  (forward-line (1- line))
  (forward-char 4))

(defun pw-listed (actions)
  "ACTIONS as JSON-able (title kind command) objects."
  (vconcat (mapcar (lambda (a) (list :title (plist-get a :title) :kind (plist-get a :kind)
                                     :command (plist-get (plist-get a :command) :command)))
                   actions)))

(defun pw-pick-code-action (kind)
  "Run `eglot-code-actions' as M-x does at point, picking the action of KIND in its menu.
Returns the titles the menu offered."
  (let (offered)
    (cl-letf (((symbol-function 'completing-read)
               (lambda (_prompt collection &rest _)
                 (setq offered (mapcar #'car collection))
                 (car (cl-find kind collection :key (lambda (item) (plist-get (cdr item) :kind))
                               :test #'equal)))))
      (let ((last-nonmenu-event ?\r)) ; a key, not a mouse click: the minibuffer menu
        (call-interactively #'eglot-code-actions)))
    (vconcat offered)))

(defun pw-main ()
  (load (plist-get pw-input :recipe))
  (setq phasewise-server-command (plist-get pw-input :cmd)
        phasewise-eglot-prefer t
        eglot-sync-connect t
        eglot-confirm-server-initiated-edits nil)
  (setq-default eglot-workspace-configuration (list :phasewise (plist-get pw-input :settings)))
  (phasewise-eglot-setup)
  (add-hook 'phasewise-result-functions (lambda (command result) (push (cons command result) pw-results)))

  (find-file (plist-get pw-input :file))
  (python-mode)
  (apply #'eglot (eglot--guess-contact))
  (pw-wait "Eglot to connect"
           (lambda () (let ((s (eglot-current-server))) (and s (object-of-class-p s 'phasewise-eglot-server)))))

  ;; M-x phasewise-phase: the phase read with completion from the server's, then the instruction
  (let (collection prompts)
    (cl-letf (((symbol-function 'completing-read)
               (lambda (prompt names &rest _) (push prompt prompts) (setq collection names) "docs"))
              ((symbol-function 'read-string)
               (lambda (prompt &rest _) (push prompt prompts) "document what load returns")))
      (let ((docs (pw-call "phasewise.phase" (lambda () (call-interactively #'phasewise-phase)))))
        (pw-observe 'docs_ok (eq (plist-get docs :ok) t))
        (pw-observe 'docs_phase (plist-get docs :phase))
        (pw-observe 'docs_text_matches (equal (plist-get docs :text)
                                              (with-current-buffer "*phasewise-docs*" (buffer-string))))))
    (pw-observe 'phase_names (vconcat collection))
    (pw-observe 'prompts (vconcat (reverse prompts))))
  (pw-observe 'docs_buffer (with-current-buffer "*phasewise-docs*" (buffer-string)))

  ;; Eglot's own code actions at a cursor under the `# phasewise:' comment ...
  (pw-goto-line (plist-get pw-input :comment_line))
  (pw-observe 'actions (pw-listed (eglot-code-actions (point))))
  ;; ... and on a line with no comment near it: each phase's default instruction
  (save-excursion
    (pw-goto-line (plist-get pw-input :bare_line))
    (pw-observe 'bare_actions (pw-listed (eglot-code-actions (point)))))

  ;; M-x eglot-code-actions, the plan picked from its menu: the plan in *phasewise-plan*
  (let (offered)
    (let ((plan (pw-call "phasewise.phase"
                         (lambda () (setq offered (pw-pick-code-action "source.phasewise.plan"))))))
      (pw-observe 'plan_ok (eq (plist-get plan :ok) t))
      (pw-observe 'plan_provider (plist-get plan :provider))
      (pw-observe 'plan_text_matches (equal (plist-get plan :text)
                                            (with-current-buffer "*phasewise-plan*" (buffer-string)))))
    (pw-observe 'menu offered))
  (pw-observe 'plan_buffer (with-current-buffer "*phasewise-plan*" (buffer-string)))
  (pw-observe 'plan_handed_to_code (and (phasewise--plan-for (phasewise--uri)) t))

  ;; the code action from the same menu: its edit lands through Eglot's workspace/applyEdit
  ;; (how many TextEdits each document's edit carries, as Eglot applies them)
  (advice-add 'eglot--apply-text-edits :before
              (lambda (edits &rest _) (push (length edits) pw-text-edit-counts)))
  (pw-goto-line (plist-get pw-input :comment_line))
  (let ((code (pw-call "phasewise.phase" (lambda () (pw-pick-code-action "refactor.rewrite.phasewise.code")))))
    (pw-observe 'code_ok (eq (plist-get code :ok) t))
    (pw-observe 'code_applied (eq (plist-get code :applied) t)))
  (pw-observe 'text_after_code (buffer-string))
  ;; ... and over the lines from the comment to the last (the region): two changes far apart
  (transient-mark-mode 1)
  (pw-goto-line (1- (plist-get pw-input :comment_line)))
  (set-mark (line-beginning-position))
  (goto-char (point-max))
  (skip-chars-backward "\n")
  (let ((code (pw-call "phasewise.phase" (lambda () (pw-pick-code-action "refactor.rewrite.phasewise.code")))))
    (pw-observe 'selection_ok (eq (plist-get code :ok) t))
    (pw-observe 'selection_applied (eq (plist-get code :applied) t)))
  (deactivate-mark)
  (pw-observe 'text_after_selection (buffer-string))
  (pw-observe 'text_edit_counts (vconcat (reverse pw-text-edit-counts)))
  (pw-observe 'modified (buffer-modified-p)))

(let ((failure nil))
  (condition-case err
      (pw-main)
    (error (setq failure (error-message-string err))
           (pw-observe 'error failure)))
  (with-temp-file (getenv "PHASEWISE_TEST_OUT")
    (insert (json-encode (mapcar (lambda (kv) (cons (car kv) (if (eq (cdr kv) nil) :json-false (cdr kv))))
                                 pw-observed))))
  (when failure (message "FAILED: %s" failure))
  (ignore-errors (eglot-shutdown (eglot-current-server)))
  (kill-emacs (if failure 1 0)))
