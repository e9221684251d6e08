"""The zygote: the launcher's long-lived interpreter, which forks one H0 per job.

Part of the harness (see `__init__`): runs in the isolated interpreter, standard library only.
`boot` loads the harness modules and calls `zygote` with the judge's end of a SEQPACKET socket.
"""

import fcntl
import gc
import json
import os
import select
import signal
import socket

from .kernel import CFG, SETUP_FAILED, die, root_mode, write_id_maps
from .lockdown import prepare
from .namespaces import h0


def zygote(sock_fd):
    """Forks one H0 per job: the interpreter starts and imports once, not once per program.

    Requests come from the judge over a SEQPACKET socket, with the job's stdin, stdout and
    stderr descriptors attached (SCM_RIGHTS): the program and its tests go straight from the
    judge to the job's stdin and never pass through here. Replies: the job's pid, then its exit
    status. Never runs untrusted code; exits when the judge closes the socket.
    """
    sock = socket.socket(fileno=sock_fd)
    children = {}  # pidfd -> (job id, pid)
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    as_root = root_mode()
    prepare_error = None
    try:
        prepare()
    except BaseException as exc:
        prepare_error = "sandbox launcher cannot prepare: %r" % (exc,)
    gc.collect()
    gc.freeze()  # forked jobs then do not copy the whole heap when their collector runs
    while True:
        for item, _ in poller.poll():
            if item == sock_fd:
                try:
                    msg, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
                except OSError:
                    os._exit(0)
                if not msg:
                    os._exit(0)
                req = json.loads(msg)
                if req["op"] == "spawn":
                    if len(fds) != 3:
                        for fd in fds:
                            os.close(fd)
                        sock.send(json.dumps({"id": req["id"], "exit": 125}).encode())
                        continue
                    sync = (os.pipe(), os.pipe()) if as_root else None
                    pid = os.fork()
                    if pid == 0:
                        try:
                            os.setsid()
                            for target, fd in enumerate(fds):
                                os.dup2(fd, target)
                            if prepare_error:
                                die(prepare_error)
                            keep = []
                            if sync:  # to fds 3 and 4, via high numbers so that nothing collides
                                high = [fcntl.fcntl(sync[0][1], fcntl.F_DUPFD, 100), fcntl.fcntl(sync[1][0], fcntl.F_DUPFD, 100)]
                                keep = [os.dup2(high[0], 3), os.dup2(high[1], 4)]
                            os.closerange(3 + len(keep), 1 << 20)  # the judge socket, other jobs' fds
                            CFG.update(req["cfg"])  # empty in the zygote: this job's limits only
                            h0(keep or None)
                        except BaseException as exc:
                            die("sandbox launcher: %r" % (exc,))
                        os._exit(SETUP_FAILED)
                    for fd in fds:
                        os.close(fd)
                    if sync:
                        (ask_r, ask_w), (ans_r, ans_w) = sync
                        os.close(ask_w)
                        os.close(ans_r)
                        waiter = select.poll()
                        waiter.register(ask_r, select.POLLIN)
                        if waiter.poll(10000) and os.read(ask_r, 1) == b"u":
                            try:
                                write_id_maps(pid, int(req["cfg"]["uid"]), int(req["cfg"]["gid"]))
                                reply = b"k"
                            except OSError as exc:
                                reply = ("writing uid/gid maps failed: %s" % exc).encode()[:300]
                            try:
                                os.write(ans_w, reply)
                            except OSError:
                                pass
                        os.close(ask_r)
                        os.close(ans_w)
                    pidfd = os.pidfd_open(pid)
                    children[pidfd] = (req["id"], pid)
                    poller.register(pidfd, select.POLLIN)
                    sock.send(json.dumps({"id": req["id"], "pid": pid}).encode())
                elif req["op"] == "kill":
                    for job, pid in children.values():
                        if job == req["id"]:
                            try:
                                os.killpg(pid, signal.SIGKILL)  # H0 and H1; the rest dies with H1
                            except OSError:
                                pass
            elif item in children:
                job, pid = children.pop(item)
                poller.unregister(item)
                os.close(item)
                _, status = os.waitpid(pid, 0)
                sock.send(json.dumps({"id": job, "exit": os.waitstatus_to_exitcode(status)}).encode())
