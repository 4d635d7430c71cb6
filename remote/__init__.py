"""The studio on a remote GPU machine: `main.py serve` renders where the model is, a client attaches over
a WebSocket (an SSH tunnel or a LAN).

protocol.py (messages, limits, the RenderRequest codec), frames.py (frame payloads), auth.py (the token),
served_root.py (which files a client may name), models.py, jobs.py, watch.py and server.py (the server),
client.py (RemoteEngine, the client side). Headless: nothing here imports app/, GL, GLFW or imgui, so the
server runs on a bare GPU node.
"""
