;;; emacs_lsp_mode.el --- Phasewise from lsp-mode, set up as docs/editors.md says, in `emacs -Q --batch'  -*- lexical-binding: t; -*-

;; Input: JSON in $PHASEWISE_TEST_INPUT {cmd, settings, root, file, plan_line, code_line}.
;; Output: what was observed, as JSON in $PHASEWISE_TEST_OUT.  Waiting is for conditions
;; (process output), never a sleep.  Exits 1 on failure.
;;
;; lsp-mode runs a code action's command as a synchronous request: Emacs is blocked until the
;; server answers, and after `lsp-response-timeout' it gives up and cancels it.  Phasewise must
;; answer at once and deliver the phase afterwards (the plan document, the edit, messages).

(require 'package)
(add-to-list 'package-directory-list "/usr/share/emacs/site-lisp/elpa") ; Debian's elpa-lsp-mode
(package-initialize)
(require 'json)
(require 'cl-lib)

(defvar pw-input (json-parse-string (getenv "PHASEWISE_TEST_INPUT") :object-type 'plist :array-type 'list))
(defvar pw-observed nil "Alist of what was observed.")
(defvar pw-messages nil "Messages shown in the echo area, newest first.")

(defun pw-observe (key value) (push (cons key value) pw-observed))

(defun pw-wait (what pred &optional timeout)
  "Process events until PRED holds, or fail naming WHAT after TIMEOUT seconds."
  (let ((deadline (+ (float-time) (or timeout 30))))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (or (funcall pred) (error "Timed out waiting for %s" what))))

(defun pw-said (prefix)
  "The newest message starting with PREFIX (after lsp-mode's \"LSP :: \"), or nil."
  (cl-some (lambda (m) (let ((m (string-remove-prefix "LSP :: " m))) (and (string-prefix-p prefix m) m)))
           pw-messages))

(advice-add 'message :around
            (lambda (orig fmt &rest args)
              (let ((text (and fmt (apply #'format-message fmt args))))
                (when text (push (substring-no-properties text) pw-messages))
                (apply orig fmt args))))

(defun pw-goto-line (line)
  (goto-char (point-min))
  (forward-line (1- line))
  (end-of-line))

(defun pw-action (kind)
  "The code action of KIND at point, as lsp-mode gets it."
  (cl-find-if (lambda (a) (equal (lsp:code-action-kind? a) kind)) (lsp-code-actions-at-point)))

(defun pw-main ()
  (let* ((root (plist-get pw-input :root))
         (file (plist-get pw-input :file))
         (settings (plist-get pw-input :settings))
         (cmd (plist-get pw-input :cmd)))
    ;; ---- docs/editors.md's recipe (lsp-mode, no plugin) ----
    (require 'lsp-mode)
    (lsp-register-client
     (make-lsp-client :new-connection (lsp-stdio-connection (lambda () cmd))
                      :activation-fn (lsp-activate-on "python")
                      :server-id 'phasewise
                      :add-on? t
                      :initialization-options (lambda () (list :phasewise settings))))
    ;; ---- the test's own set-up: no prompts, no session file in $HOME, diagnostics kept by lsp-mode ----
    (setq lsp-session-file (expand-file-name "lsp-session" root)
          lsp-auto-guess-root nil lsp-enable-file-watchers nil lsp-keep-workspace-alive nil
          lsp-restart 'ignore lsp-diagnostics-provider :none lsp-modeline-code-actions-enable nil
          lsp-headerline-breadcrumb-enable nil lsp-enable-snippet nil lsp-log-io t
          lsp-response-timeout 10)
    (lsp-workspace-folders-add root)
    (find-file file)
    (python-mode)
    (lsp)
    (pw-wait "the server to start"
             (lambda () (cl-some (lambda (w) (eq (lsp--workspace-status w) 'initialized)) (lsp-workspaces))))
    (pw-observe 'connected t)
    ;; ---- code actions: the settings given at start are the ones in use ([{}] pulls are no answer) ----
    (pw-goto-line (plist-get pw-input :plan_line))
    (pw-observe 'titles (vconcat (mapcar #'lsp:code-action-title (lsp-code-actions-at-point))))
    ;; ---- the plan, from its code action: answered at once, delivered afterwards ----
    (let* ((action (or (pw-action "source.phasewise.plan") (error "no plan action")))
           (started (float-time)))
      (lsp-execute-code-action action)
      (pw-observe 'plan_command_seconds (- (float-time) started))
      (pw-observe 'plan_done_before_answer (and (pw-said "Phasewise plan (") t))
      (pw-wait "the plan's end" (lambda () (pw-said "Phasewise plan (")) 60)
      (pw-observe 'plan_seconds (- (float-time) started))
      (pw-observe 'plan_message (pw-said "Phasewise plan ("))
      (let ((plan (expand-file-name ".phasewise/plans/store.py-plan.md" root)))
        (pw-observe 'plan_file (file-exists-p plan))
        (pw-observe 'plan_wrote_message (pw-said "Phasewise: wrote"))))
    ;; ---- the code phase, from its code action: the edit arrives in the buffer ----
    (with-current-buffer (find-buffer-visiting file)
      (pw-goto-line (plist-get pw-input :code_line))
      (let* ((before (buffer-string))
             (action (or (pw-action "refactor.rewrite.phasewise.code") (error "no code action")))
             (started (float-time)))
        (lsp-execute-code-action action)
        (pw-observe 'code_command_seconds (- (float-time) started))
        (pw-wait "the code phase's end" (lambda () (pw-said "Phasewise code (")) 60)
        (pw-observe 'code_message (pw-said "Phasewise code ("))
        (pw-observe 'buffer_changed (not (equal before (buffer-string))))
        (pw-observe 'buffer (buffer-string))))))

(let ((out (getenv "PHASEWISE_TEST_OUT")))
  (condition-case err
      (progn (pw-main)
             (with-temp-file out (insert (json-encode pw-observed)))
             (kill-emacs 0))
    (error
     (push (cons 'error (error-message-string err)) pw-observed)
     (push (cons 'messages (vconcat (reverse pw-messages))) pw-observed)
     (with-temp-file out (insert (json-encode pw-observed)))
     (kill-emacs 1))))
