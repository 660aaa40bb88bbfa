;;; emacs_commands.el --- named commands and their trust, in `emacs -Q --batch'  -*- lexical-binding: t; -*-

;; Issue 22, item 2, as an Eglot user meets it: a command in `phasewise-user-settings' (the user's
;; init file) runs unasked when an agent phase calls run_command; the commands a project's
;; .dir-locals.el adds to `eglot-workspace-configuration' make the server ask
;; (`window/showMessageRequest'), in the minibuffer.  The answers come from stdin, as a user types
;; them in batch mode ("Allow once", then "Deny"); the pytest checks the marker files on disk.
;; Input: JSON in $PHASEWISE_TEST_INPUT {recipe, cmd, user_commands, settings, file, instruction};
;; SETTINGS (the project's `phasewise' section) is written to the project's .dir-locals.el.
;; Output: what was observed, as JSON in $PHASEWISE_TEST_OUT.  Waiting is for conditions
;; (process output), never a sleep.  Exits 1 on failure.

(require 'package)
(add-to-list 'package-directory-list "/usr/share/emacs/site-lisp/elpa") ; Debian's elpa-eglot
(package-initialize)
(require 'eglot)
(require 'json)

(defvar pw-input (json-parse-string (getenv "PHASEWISE_TEST_INPUT") :object-type 'plist :array-type 'array))
(defvar pw-observed nil "Alist of what was observed.")
(defvar pw-results nil "(COMMAND . RESULT) answers, newest first.")
(defvar pw-asked nil "Each minibuffer question: its prompt, choices and answer, newest first.")

(defun pw-observe (key value) (push (cons key value) pw-observed))

(defun pw-wait (what pred &optional timeout)
  "Process events until PRED holds, or fail naming WHAT after TIMEOUT seconds."
  (let ((deadline (+ (float-time) (or timeout 30))))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (or (funcall pred) (error "Timed out waiting for %s" what))))

(defun pw-main ()
  (load (plist-get pw-input :recipe))
  ;; the user's init file: the server, and a command of their own
  (setq phasewise-server-command (append (plist-get pw-input :cmd) nil)
        phasewise-eglot-prefer t
        eglot-sync-connect t
        phasewise-user-settings (list :commands (plist-get pw-input :user_commands)))
  (phasewise-eglot-setup)
  (add-hook 'phasewise-result-functions (lambda (command result) (push (cons command result) pw-results)))
  ;; the project's .dir-locals.el: its settings, with commands of its own
  (let ((file (plist-get pw-input :file)))
    (with-temp-file (expand-file-name ".dir-locals.el" (file-name-directory file))
      (prin1 `((nil . ((eglot-workspace-configuration . (:phasewise ,(plist-get pw-input :settings))))))
             (current-buffer))))
  ;; each question as the minibuffer asks it; the answer is read as in batch mode, from stdin
  (advice-add 'completing-read :around
              (lambda (read prompt collection &rest args)
                (let ((answer (apply read prompt collection args)))
                  (push (list :prompt prompt :choices (vconcat collection) :answer answer) pw-asked)
                  answer)))
  (find-file (plist-get pw-input :file))
  (python-mode)
  (apply #'eglot (eglot--guess-contact))
  (pw-wait "Eglot to connect"
           (lambda () (let ((s (eglot-current-server))) (and s (object-of-class-p s 'phasewise-eglot-server)))))
  (let ((server (eglot-current-server)))
    (pw-observe 'capabilities_window (plist-get (eglot-client-capabilities server) :window))
    (pw-observe 'initialization_options (eglot-initialization-options server)))
  (phasewise-plan (plist-get pw-input :instruction))
  (pw-wait "the plan phase" (lambda () (assoc "phasewise.plan" pw-results)))
  (let ((plan (cdr (assoc "phasewise.plan" pw-results))))
    (pw-observe 'plan (list :ok (plist-get plan :ok) :text (plist-get plan :text)
                            :steps (plist-get plan :steps))))
  (pw-observe 'asked (vconcat (reverse pw-asked))))

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
