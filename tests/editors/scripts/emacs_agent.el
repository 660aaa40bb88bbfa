;;; emacs_agent.el --- phases that work in steps, in `emacs -Q --batch'  -*- lexical-binding: t; -*-

;; A plan that looks around the project lists its steps above the plan in *phasewise-plan* as they
;; happen (the plan handed to the code phase is the plan alone); a code phase that searches, reads
;; and edits two files lists its steps in *phasewise-code steps* as they happen, then its one edit
;; lands through Eglot and the buffer says so under the steps.
;; Input: JSON in $PHASEWISE_TEST_INPUT {recipe, cmd, settings, file, instruction}.
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

(defvar pw-steps nil "What each buffer held right after each step, newest first.")

(defun pw-buffer-text (name) (let ((b (get-buffer name))) (and b (with-current-buffer b (buffer-string)))))

(defun pw-main ()
  (load (plist-get pw-input :recipe))
  (setq phasewise-server-command (plist-get pw-input :cmd)
        phasewise-eglot-prefer t
        eglot-sync-connect t
        eglot-confirm-server-initiated-edits nil)
  (setq-default eglot-workspace-configuration (list :phasewise (plist-get pw-input :settings)))
  (phasewise-eglot-setup)
  (add-hook 'phasewise-result-functions (lambda (command result) (push (cons command result) pw-results)))
  ;; each step as the recipe showed it: the buffers right after, and whether the phase had answered
  (advice-add 'eglot-handle-notification :after
              (lambda (_server method &rest params)
                (when (eq method 'phasewise/step)
                  (push (list :phase (plist-get params :phase) :step (plist-get (plist-get params :step) :step)
                              :answered (length pw-results)
                              :plan (pw-buffer-text "*phasewise-plan*")
                              :code (pw-buffer-text "*phasewise-code steps*")
                              :shown (and (get-buffer-window (if (equal (plist-get params :phase) "plan")
                                                                   "*phasewise-plan*" "*phasewise-code steps*"))
                                          t))
                        pw-steps))))

  (find-file (plist-get pw-input :file))
  (python-mode)
  (apply #'eglot (eglot--guess-contact))
  (pw-wait "Eglot to connect"
           (lambda () (let ((s (eglot-current-server))) (and s (object-of-class-p s 'phasewise-eglot-server)))))
  (let ((instruction (plist-get pw-input :instruction)))
    (let ((plan (pw-call "phasewise.plan" (lambda () (phasewise-plan instruction)))))
      (pw-observe 'plan_result plan))
    (pw-observe 'plan_buffer (pw-buffer-text "*phasewise-plan*"))
    (pw-observe 'plan_handed (phasewise--plan-for (phasewise--uri)))
    ;; Eglot asks before it edits a file no buffer visits (orders.py): the user says yes, having
    ;; seen the steps
    (cl-letf (((symbol-function 'y-or-n-p)
               (lambda (prompt)
                 (pw-observe 'asked prompt)
                 (pw-observe 'code_buffer_at_ask (pw-buffer-text "*phasewise-code steps*"))
                 t)))
      (let ((code (pw-call "phasewise.code" (lambda () (phasewise-code instruction)))))
        (pw-observe 'code_result code))))
  (pw-observe 'code_buffer (pw-buffer-text "*phasewise-code steps*"))
  (pw-observe 'text_after_code (buffer-string))
  (let ((caller (find-buffer-visiting (expand-file-name "orders.py" (file-name-directory (plist-get pw-input :file))))))
    (pw-observe 'caller_after_code (and caller (with-current-buffer caller (buffer-string))))
    (pw-observe 'caller_modified (and caller (buffer-modified-p caller))))
  (pw-observe 'steps (vconcat (reverse pw-steps))))

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
