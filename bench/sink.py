"""Upload sink for the load test: reads every byte of a request body (plain or chunked)
before answering, so a streamed upload really crosses the gateway."""
import http.server
import socketserver
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        total = self._read_body()
        body = ('{"received_bytes": %d}' % total).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST

    def _read_body(self):
        total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                while size:
                    n = len(self.rfile.read(min(size, 1 << 20)))
                    total, size = total + n, size - n
                self.rfile.readline()
        left = int(self.headers.get("Content-Length", "0"))
        while left:
            n = len(self.rfile.read(min(left, 1 << 20)))
            if not n:
                break
            total, left = total + n, left - n
        return total

    def log_message(self, *args):
        pass


socketserver.TCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Sink) as server:
    server.serve_forever()
