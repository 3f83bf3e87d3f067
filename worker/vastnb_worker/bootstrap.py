# The first thing that runs on a box, sent as the text of `python3 -I -c` (no files needed).
# It answers one line on stdout (HAVE, SEND or OLD), receives the worker zipapp on stdin
# when the box lacks it (or its cached copy no longer has the hash it is named by), caches
# it under its content hash, then becomes the relay.
# Plain old syntax on purpose: it must be able to say "too old" on any python3.
import hashlib
import os
import sys


def main():
    home, digest, size = os.path.expanduser(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    extra = sys.argv[4:]
    if sys.version_info < (3, 9):
        os.write(1, ("OLD %d.%d\n" % sys.version_info[:2]).encode())
        sys.exit(3)
    lib = os.path.join(home, "lib")
    os.makedirs(lib, exist_ok=True)  # two first connections may race to make it
    path = os.path.join(lib, digest + ".pyz")
    if cached(path) == digest:
        os.write(1, b"HAVE\n")
    else:
        os.write(1, b"SEND\n")
        chunks, got = [], 0
        while got < size:  # exactly `size` bytes: what follows on stdin is the session's
            chunk = os.read(0, min(size - got, 1 << 20))
            if not chunk:
                sys.exit(4)
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks)
        if hashlib.sha256(data).hexdigest() != digest:
            sys.stderr.write("vastnb: the worker arrived corrupted (sha256 mismatch)\n")
            sys.exit(5)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    os.execv(sys.executable, [sys.executable, "-I", path, "relay", "--home", home, "--digest", digest] + extra)


def cached(path):
    """The sha256 of the cached zipapp at ``path`` (None if there is none): only a copy
    that still hashes to its name is run."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


if __name__ == "__main__":
    main()
