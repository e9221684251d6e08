"""The code judge's sandbox: runs untrusted Python in a throw-away Linux sandbox.

`s3ft_jax.judges.code` is the API; docs/code_sandbox.md states the guarantees. Two kinds of
module live here.

The judge's side (imports s3ft_jax):
  outcome     CodeResult, SandboxUnavailable, the statuses
  launcher    starts the zygote (a fresh `python -s -S -B -P -c <boot.py>`, clean environment)
  execute     one job: its limits, payload, the exchange with H1, the verdict line
  probe       the program check_sandbox runs inside the sandbox to test the isolation

The harness (runs in the isolated interpreter: standard library only, never s3ft_jax; `boot`
loads the others from sources the launcher reads from these files):
  boot        the -c program: loads the modules below, runs the zygote
  zygote      long-lived, imports once, forks one H0 per job; never runs untrusted code
  namespaces  H0: user, mount, network, PID, IPC, UTS and cgroup namespaces; mounts; forks H1
  pid1        H1, PID 1 of the sandbox: private /proc, read-only remount, drops privileges,
              forks W, then reads the job, runs the tests and writes the verdict
  lockdown    capabilities, no_new_privs, the seccomp filter
  judging     H1 runs each assert itself; names the program defines are proxies
  proxies     plain data and handles to worker objects, checked on the way in
  channel     H1's framed, deadline-bound pipe to the worker
  wire        the JSON wire format both ends encode plain data with
  worker      W: execs the program and answers H1's requests
  kernel      the job's limits, setup failure, ctypes calls into libc, id maps, root_mode

Each harness module imports only the standard library and the modules before it in
`launcher.HARNESS_MODULES`, and does nothing when imported, so the judge and the unit tests
can import it as an ordinary module (as `s3ft_jax.judges.sandbox.<name>`).
"""
