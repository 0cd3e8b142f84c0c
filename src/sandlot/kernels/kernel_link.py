"""A Jupyter kernel as the driver holds it: its process (Child) and its shell and iopub sockets
(KernelLink). jupyter_client and zmq are imported only once a kernel is on its way (see spawn.py)."""

import asyncio
import os


class KernelLink:
    """The shell and iopub sockets of one kernel, read straight from the event loop (one callback
    per readable socket, no future per message), signed and parsed by jupyter_client's Session."""

    def __init__(self, info, sockets, on_shell, on_iopub):
        import zmq
        from jupyter_client.session import Session

        self.zmq = zmq
        self.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"],
                               username="sandlot")
        context = zmq.Context.instance()
        self.shell = context.socket(zmq.DEALER)
        self.iopub = context.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        for sock, path in ((self.shell, sockets["shell"]), (self.iopub, sockets["iopub"])):
            sock.linger = 0
            sock.connect("ipc://" + path)
        self.handlers = ((self.shell, on_shell), (self.iopub, on_iopub))
        self.loop = asyncio.get_running_loop()
        for sock, handle in self.handlers:
            self.loop.add_reader(sock.FD, self.drain)

    def drain(self):
        # zmq's FD is edge-triggered: read until neither socket has anything left
        progress = True
        while progress:
            progress = False
            for sock, handle in self.handlers:
                if sock.closed or not sock.EVENTS & self.zmq.POLLIN:
                    continue
                try:
                    frames = sock.recv_multipart(self.zmq.NOBLOCK)
                except self.zmq.Again:
                    continue
                progress = True
                try:
                    _, frames = self.session.feed_identities(frames)
                    msg = self.session.deserialize(frames)
                except Exception:  # unsigned or malformed: not from our kernel
                    continue
                handle(msg)

    def send(self, msg_type, content):
        msg = self.session.msg(msg_type, content)
        self.session.send(self.shell, msg)
        self.loop.call_soon(self.drain)  # a send can swallow the FD's edge for a pending reply
        return msg["header"]["msg_id"]

    def execute(self, code, silent):
        return self.send("execute_request", {"code": code, "silent": silent, "store_history": not silent,
                                             "user_expressions": {}, "allow_stdin": False,
                                             "stop_on_error": False})

    def close(self):
        for sock, _ in self.handlers:
            if not sock.closed:
                self.loop.remove_reader(sock.FD)
                sock.close(linger=0)


class Child:
    """A kernel process (subprocess.Popen) that the event loop can wait for."""

    def __init__(self, popen):
        self.popen, self.pid = popen, popen.pid

    @property
    def returncode(self):
        return self.popen.poll()

    async def wait(self):
        if self.popen.poll() is None:  # not reaped: its pid cannot be reused while we watch it
            loop = asyncio.get_running_loop()
            fd = os.pidfd_open(self.pid)
            exited = loop.create_future()
            loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
            try:
                await exited
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        return self.popen.wait()
