"""A TCP client written the way the project's source notes write one:
create a socket, connect, send what the user typed, recv, print.

Used by crates/volna/tests/tcp_python_client.rs. The "typed" messages come
from argv instead of input() so a test can drive it. Like the notes' client,
it sends each message without a newline; volna takes a partial line that
stays unfinished for a moment as a complete one.
"""
import socket
import sys

HOST, PORT = sys.argv[1], int(sys.argv[2])
messages = sys.argv[3:]

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.connect((HOST, PORT))
sock.settimeout(10)

REPLIES = (b"ok ", b"msg ", b"error ", b"bye ")

received = b""
for message in messages:
    sock.send(message.encode())
    # recv until the server has answered this message (one reply per line).
    while True:
        data = sock.recv(1024)
        if not data:
            break
        print(f"Пришло от сервера: {data.decode()}", end="", flush=True)
        received += data
        lines = received.split(b"\n")
        received = lines[-1]
        if any(line.startswith(REPLIES) for line in lines[:-1]):
            break

sock.shutdown(1)
sock.close()
