"""service: the daemon's life under systemd and on the shop floor. Every service is a
``lifecycle.Service`` (setup -> run loop -> teardown on its own thread, one stop event), wired by
``daemon.py``; none of them imports the daemon.

- ``notify``: sd_notify (READY, STATUS, WATCHDOG, STOPPING) over ``$NOTIFY_SOCKET``, no libsystemd;
- ``control``: the local control socket (the command table's door for ``status`` and ``ctl``) and
  its client;
- ``handlers``: what each command of the table does;
- ``reload``: SIGHUP: a new config and recipe for the next parts, or the old ones kept;
- ``retention`` (with ``prune``): old rows and reject images pruned, images stopped when the disk is
  nearly full;
- ``doctor``: the checks behind ``edge-inspector doctor``.
"""
