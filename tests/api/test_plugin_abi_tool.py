"""panthera-plugin-abi (sdk/tools): the ABI a built plugin needs, read from the file as
dh_panthera uses it to write a plugin package's `panthera-abi-M (>= M.N)` dependency.
Checked against the test plugins, whose descriptors the host's loader tests rely on."""
import os
import subprocess

import pytest

from panthera_server import BUILD, REPO, header_abi

TOOL = os.path.join(REPO, "sdk", "tools", "panthera-plugin-abi")
PLUGINS = os.path.join(BUILD, "tests", "plugins")


def run(*paths):
    return subprocess.run(["python3", TOOL, *paths], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("plugin,expect", [
    ("testkit", lambda M, m: "%d.%d" % (M, m)),        # PX_MIN_MINOR defaults to the header's
    ("abi_1_0", lambda M, m: "1.0"),                   # built against the frozen 1.0 header
    ("abi_minor", lambda M, m: "%d.%d" % (M, m + 1)),  # a newer minor than this host
    ("abi_major", lambda M, m: "%d.0" % (M + 1)),
])
def test_reads_the_descriptor(plugin, expect):
    r = run(os.path.join(PLUGINS, plugin + ".so"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == expect(*header_abi()) + "\n"


def test_several_files_are_named():
    a, b = (os.path.join(PLUGINS, n + ".so") for n in ("testkit", "abi_1_0"))
    r = run(a, b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["%s %d.%d" % ((a,) + header_abi()), "%s 1.0" % b]


@pytest.mark.parametrize("plugin,why", [
    ("no_descriptor", "no px_plugin_info descriptor"),
    ("bad_magic", "px_plugin_info has magic number 0xdeadbeef, not 0x5058504c"),
])
def test_refuses_what_is_not_a_plugin(plugin, why):
    r = run(os.path.join(PLUGINS, plugin + ".so"))
    assert r.returncode == 1
    assert r.stdout == ""
    assert "not a Panthera plugin: " + why in r.stderr, r.stderr


def test_refuses_a_file_that_is_not_elf(tmp_path):
    p = tmp_path / "text.so"
    p.write_text("not a shared object\n")
    r = run(str(p))
    assert r.returncode == 1 and "not an ELF file" in r.stderr, r.stderr
