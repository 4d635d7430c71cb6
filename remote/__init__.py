"""The studio on a remote GPU machine: `main.py serve` renders where the model is, a client attaches over
a WebSocket (an SSH tunnel or a LAN).

protocol.py (messages, limits, the RenderRequest codec) and frames.py (frame payloads) are shared. The
server: server.py (connections, authentication, dispatch), peer.py (one connection's queues and files),
render_loop.py (latest-wins rendering), models.py, jobs.py, watch.py, auth.py, served_root.py. The client:
client.py (RemoteEngine), link.py (the connection), tasks.py (jobs and downloads it waits for).
Headless: nothing here imports GL, GLFW or imgui, so the server runs on a bare GPU node.
"""
