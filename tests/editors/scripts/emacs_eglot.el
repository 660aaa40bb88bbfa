;;; emacs_eglot.el --- Phasewise's Eglot recipe in `emacs -Q --batch'  -*- lexical-binding: t; -*-

;; Input: JSON in $PHASEWISE_TEST_INPUT {recipe, cmd, settings, file, late_key}.  Output: what was
;; observed, as JSON in $PHASEWISE_TEST_OUT.  Waiting is for conditions (process output), never a
;; sleep.  Exits 1 on failure.

(require 'package)
(add-to-list 'package-directory-list "/usr/share/emacs/site-lisp/elpa") ; Debian's elpa-eglot
(package-initialize)
(require 'eglot)
(require 'flymake)
(require 'json)

(defvar pw-input (json-parse-string (getenv "PHASEWISE_TEST_INPUT") :object-type 'plist :array-type 'list))
(defvar pw-observed nil "Alist of what was observed.")
(defvar pw-results nil "(COMMAND . RESULT) answers, newest first.")
(defvar pw-chunks 0 "How many phasewise/streamText notifications arrived.")
(defvar pw-streamed nil "The plan buffer's text after the latest streamed chunk.")

(defun pw-observe (key value) (push (cons key value) pw-observed))

(defun pw-wait (what pred &optional timeout)
  "Process events until PRED holds, or fail naming WHAT after TIMEOUT seconds."
  (let ((deadline (+ (float-time) (or timeout 15))))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (or (funcall pred) (error "Timed out waiting for %s" what))))

(defun pw-call (command thunk)
  "Call THUNK, which runs COMMAND; wait for its answer and return it."
  (let ((before (length pw-results)))
    (funcall thunk)
    (pw-wait command (lambda () (and (> (length pw-results) before) (equal (caar pw-results) command))))
    (cdar pw-results)))

(defun pw-problems ()
  "The Flymake diagnostics of the current buffer whose LSP source is phasewise."
  (cl-loop for d in (flymake-diagnostics)
           for spec = (alist-get 'eglot-lsp-diag (flymake-diagnostic-data d))
           when (equal (plist-get spec :source) "phasewise") collect spec))

(defun pw-main ()
  (load (plist-get pw-input :recipe))
  (setq phasewise-server-command (plist-get pw-input :cmd)
        phasewise-eglot-prefer t
        eglot-sync-connect t
        eglot-confirm-server-initiated-edits nil)
  (setq-default eglot-workspace-configuration (list :phasewise (plist-get pw-input :settings)))
  (phasewise-eglot-setup)
  (add-hook 'phasewise-result-functions (lambda (command result) (push (cons command result) pw-results)))
  (advice-add 'eglot-handle-notification :after
              (lambda (_server method &rest _)
                (when (eq method 'phasewise/streamText)
                  (cl-incf pw-chunks)
                  (setq pw-streamed (with-current-buffer "*phasewise-plan*" (buffer-string))))))

  (find-file (plist-get pw-input :file))
  (python-mode)
  (apply #'eglot (eglot--guess-contact))
  (pw-wait "Eglot to connect"
           (lambda () (let ((s (eglot-current-server))) (and s (object-of-class-p s 'phasewise-eglot-server)))))
  (pw-observe 'managed (and eglot--managed-mode t))
  (pw-observe 'server_version (plist-get (eglot--server-info (eglot-current-server)) :version))

  ;; a phase against the simulator: the plan, streamed into *phasewise-plan*
  (setq pw-chunks 0)
  (let ((plan (pw-call "phasewise.plan" (lambda () (phasewise-plan "rename load to read_file")))))
    (pw-observe 'plan_ok (eq (plist-get plan :ok) t))
    (pw-observe 'plan_provider (plist-get plan :provider))
    (pw-observe 'plan_text_matches (equal (plist-get plan :text)
                                          (with-current-buffer "*phasewise-plan*" (buffer-string)))))
  (pw-observe 'plan_buffer (with-current-buffer "*phasewise-plan*" (buffer-string)))
  (pw-observe 'stream_chunks pw-chunks)
  (pw-observe 'streamed pw-streamed)

  ;; the plan re-routed with an output limit it cannot fit in: cut, and it says so
  (setq-default eglot-workspace-configuration (list :phasewise (plist-get pw-input :cut_settings)))
  (eglot-signal-didChangeConfiguration (eglot-current-server))
  (let ((messages nil))
    (cl-flet ((record (format &rest args) (when format (push (apply #'format-message format args) messages))))
      (advice-add 'message :before #'record)
      (unwind-protect
          (let ((cut (pw-call "phasewise.plan" (lambda () (phasewise-plan "rename load to read_file")))))
            (pw-observe 'cut_result (list :ok (eq (plist-get cut :ok) t) :incomplete (eq (plist-get cut :incomplete) t)
                                          :note (plist-get cut :note) :text (plist-get cut :text))))
        (advice-remove 'message #'record)))
    (pw-observe 'cut_messages (vconcat (reverse messages))))
  (with-current-buffer "*phasewise-plan*"
    (pw-observe 'cut_plan_buffer (buffer-substring-no-properties (point-min) (point-max)))
    (pw-observe 'cut_highlight (vector (get-char-property (point-min) 'face)
                                       (- (next-single-char-property-change (point-min) 'face) (point-min)))))
  (pw-observe 'cut_warnings (with-current-buffer (get-buffer-create "*Warnings*")
                              (buffer-substring-no-properties (point-min) (point-max))))
  (pw-observe 'cut_handed (phasewise--plan-for (phasewise--uri)))
  (setq-default eglot-workspace-configuration (list :phasewise (plist-get pw-input :settings)))
  (eglot-signal-didChangeConfiguration (eglot-current-server))

  ;; a missing key: the code phase fails (said in the echo area), and the problem arrives as a
  ;; Flymake diagnostic
  (let ((messages nil))
    (cl-flet ((record (format &rest args) (when format (push (apply #'format-message format args) messages))))
      (advice-add 'message :before #'record)
      (unwind-protect
          (let ((code (pw-call "phasewise.code" (lambda () (phasewise-code "add a docstring")))))
            (pw-observe 'code_ok (eq (plist-get code :ok) t))
            (pw-observe 'code_error_kind (plist-get (plist-get code :error) :kind))
            (pw-observe 'code_error_message (plist-get (plist-get code :error) :message)))
        (advice-remove 'message #'record)))
    (pw-observe 'code_messages (vconcat (reverse messages))))
  (pw-wait "the Flymake diagnostic" (lambda () (flymake-start) (pw-problems)))
  (let ((spec (car (pw-problems))))
    (pw-observe 'diag_source (plist-get spec :source))
    (pw-observe 'diag_code (plist-get spec :code))
    (pw-observe 'diag_key_env (plist-get (plist-get spec :data) :keyEnv))
    (pw-observe 'diag_message (plist-get spec :message)))
  (pw-observe 'text_after_failure (buffer-string))

  ;; its quick fixes, through `eglot-code-actions'; "Phasewise: Set API Key…" asks with `read-passwd'
  (let* ((actions (eglot-code-actions (point-min) (save-excursion (goto-char (point-min)) (line-end-position))))
         (set-key (cl-find "phasewise.setApiKey" actions
                           :key (lambda (a) (plist-get (plist-get a :command) :command)) :test #'equal)))
    (pw-observe 'actions (vconcat (mapcar (lambda (a) (plist-get a :title)) actions)))
    (cl-letf (((symbol-function 'read-passwd)
               (lambda (prompt &rest _) (pw-observe 'passwd_prompt prompt) (plist-get pw-input :late_key))))
      (eglot-execute-command (eglot-current-server) 'phasewise.setApiKey
                             (plist-get (plist-get set-key :command) :arguments))))
  (let ((again (pw-call "phasewise.code" (lambda () (phasewise-code "add a docstring")))))
    (pw-observe 'code_after_key_ok (eq (plist-get again :ok) t)))

  ;; trust: the project (as a .dir-locals.el would) redirects `openai' to the simulator and
  ;; allows that origin itself; only `phasewise-user-settings' may allow it
  (let* ((origin (plist-get pw-input :redirect_origin))
         (allow (list :security (list :allowedKeyOrigins (vector origin)))))
    (dir-locals-set-class-variables
     'pw-hostile-project
     `((nil . ((eglot-workspace-configuration
                . (:phasewise ,(append (plist-get pw-input :redirect_settings) allow)))))))
    (dir-locals-set-directory-class
     (file-name-directory (directory-file-name (file-name-directory (plist-get pw-input :file))))
     'pw-hostile-project)
    (eglot-signal-didChangeConfiguration (eglot-current-server))
    (let ((refused (pw-call "phasewise.plan" (lambda () (phasewise-plan "rename load to read_file")))))
      (pw-observe 'redirect_ok (eq (plist-get refused :ok) t))
      (pw-observe 'redirect_kind (plist-get (plist-get refused :error) :kind))
      (pw-observe 'redirect_setting (plist-get (plist-get refused :error) :setting)))
    (pw-observe 'project_ledger_written
                (file-exists-p (plist-get (plist-get pw-input :redirect_settings) :ledgerPath)))
    (pw-observe 'warnings (if (get-buffer "*Warnings*")
                              (with-current-buffer "*Warnings*" (buffer-string))
                            ""))
    (setq phasewise-user-settings allow)
    (eglot-signal-didChangeConfiguration (eglot-current-server))
    (let ((allowed (pw-call "phasewise.plan" (lambda () (phasewise-plan "rename load to read_file")))))
      (pw-observe 'allowed_ok (eq (plist-get allowed :ok) t))
      (pw-observe 'allowed_provider (plist-get allowed :provider)))))

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
