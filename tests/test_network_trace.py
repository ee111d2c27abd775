"""No packet leaves: the main commands under ``strace -f -e trace=network``, judged by their system calls.

The network guard refuses connections and name resolution from Python, but a library's C code (glibc's resolver
called by a C extension, say) is invisible to it; the kernel sees everything. The traced processes run with
the guard off and without the offline variables the test suite sets, so what keeps them offline is only what
importing ``diarizen_lab`` does — once with ``diarizen_lab`` imported first (the command line), once with
pyannote.audio imported before it (a notebook or script), where pyannote's telemetry and huggingface_hub have
already read their settings. (onnxruntime imported before ``diarizen_lab`` cannot be silenced any more: that
case is a warning, see :mod:`diarizen_lab.offline`.)

A failure lists the offending system calls: a connection or datagram to an address that is not loopback, or
any DNS traffic (port 53, or the nameservers of ``/etc/resolv.conf``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyannote.audio
import pytest

from diarizen_lab import OFFLINE_DEFAULTS
from diarizen_lab.models.io import save_model
from test_bad_inputs import tiny_model
from test_training_loop import write_config

pytestmark = pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (scripts/setup.sh installs it: apt-get install "
    "strace)",
)

SAMPLE = Path(pyannote.audio.__file__).parent / "sample"
SENDING_CALLS = ("connect", "sendto", "sendmsg", "sendmmsg")
_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
COMMANDS_FIRST = "from diarizen_lab.cli import main"
PYANNOTE_FIRST = "import pyannote.audio, huggingface_hub, transformers; from diarizen_lab.cli import main"
RUN_ALL = (  # a loopback connection first: the trace must show it (and not count it)
    "; import json, socket, sys; from diarizen_lab.utils import netguard; assert not netguard.is_installed(); "
    "server = socket.create_server(('127.0.0.1', 0)); socket.create_connection(server.getsockname()).close(); "
    "codes = [main(argv) for argv in json.load(open(sys.argv[1]))]; print('exit codes', codes); "
    "sys.exit(max(codes))"
)


def nameservers() -> set[str]:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return set()
    return {line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1}


def leaks(trace: str) -> list[str]:
    """The system calls of an ``strace -e trace=network`` log that send to the network or to a resolver."""
    resolvers = nameservers()
    found = []
    for line in trace.splitlines():
        call = line.split(maxsplit=1)[-1]
        if not call.startswith(SENDING_CALLS) or "AF_INET" not in call:
            continue
        addresses = [a or b for a, b in _ADDRESS.findall(call)]
        ports = [int(port) for port in _PORT.findall(call)]
        if 53 in ports or resolvers & set(addresses):
            found.append(line)
        elif any(not ipaddress.ip_address(address).is_loopback for address in addresses):
            found.append(line)
    return found


def test_leaks_are_recognised_in_a_trace():
    trace = (
        '7 connect(3, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT\n'
        '7 connect(4, {sa_family=AF_INET, sin_port=htons(29500), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
        '7 connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0\n'
        '8 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH\n'
        '8 sendto(6, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(4318), sin_addr=inet_addr("192.0.2.7")}, 16) = 1\n'
    )
    assert [line.split()[1].split(",")[0] for line in leaks(trace)] == ["connect(3", "connect(5", "sendto(6"]


def data_dir(folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(SAMPLE / "sample.wav", folder / "sample.wav")
    shutil.copy(SAMPLE / "sample.rttm", folder / "rttm")
    (folder / "wav.scp").write_text("sample sample.wav\n")
    return folder


def commands(folder: Path) -> list[list[str]]:
    """train (1 epoch) -> average -> diarize -> score, doctor, and the prune extract stage, all in one process."""
    corpus = folder / "corpus"
    data = data_dir(corpus / "train")
    shutil.copytree(data, corpus / "dev")
    run = folder / "exp" / "trace"
    wavlm_model = save_model(folder / "wavlm_model.pt", tiny_model())
    return [
        ["train", "-C", str(write_config(folder, corpus, "trace")), "--set", "trainer.max_epochs=1"],
        ["average", "-e", str(run), "-n", "1", "-o", str(folder / "avg.pt")],
        ["diarize", "-c", str(folder / "avg.pt"), "-i", str(data / "wav.scp"), "-o", str(folder / "rttm"),
         "--set", "diarization.embedding=fbank-stats"],
        ["score", "-r", str(data / "rttm"), "-s", str(folder / "rttm" / "sample.rttm")],
        ["doctor", "--checkpoint-dir", str(folder / "checkpoints")],
        ["prune", "extract", "-c", str(wavlm_model), "-o", str(folder / "wavlm.pt")],
    ]


@pytest.mark.parametrize("imports", [COMMANDS_FIRST, PYANNOTE_FIRST], ids=["diarizen-lab-first", "pyannote-first"])
def test_main_commands_send_nothing_to_the_network(imports, tmp_path):
    argv_file = tmp_path / "commands.json"
    argv_file.write_text(json.dumps(commands(tmp_path)))
    trace = tmp_path / "strace.log"
    blocked = {"DIARIZEN_LAB_BLOCK_NETWORK", *OFFLINE_DEFAULTS}
    env = {name: value for name, value in os.environ.items() if name not in blocked}
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=network", "-o", str(trace),
         sys.executable, "-c", imports + RUN_ALL, str(argv_file)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "exit codes [0, 0, 0, 0, 0, 0]" in result.stdout
    assert (tmp_path / "rttm" / "sample.rttm").is_file() and (tmp_path / "wavlm.pt").is_file()
    log = trace.read_text()
    assert re.search(r'connect\(.*inet_addr\("127\.0\.0\.1"\)', log)  # the trace sees connections
    assert leaks(log) == []
