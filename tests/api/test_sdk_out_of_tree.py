"""A plugin author's path: install the SDK, build the example with nothing but
`pkg-config panthera-sdk` and its Makefile, out of tree, and load the result.

The module fixture ``sdk`` runs ``meson install --destdir <tmp>`` of $PANTHERA_BUILD
(prefix /usr/local inside the destdir), copies sdk/examples/hello/ elsewhere and runs
``make`` there with PKG_CONFIG_PATH / PKG_CONFIG_SYSROOT_DIR pointing into the destdir.
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import pytest
import requests

from panthera_server import BUILD, PLUGIN_PATH, REPO, Server, ServerError

TOOLS = ("meson", "make", "cc", "pkg-config", "nm", "ldd")


def run(cmd, env=None, timeout=60, cwd=None):
    p = subprocess.run(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def abi_from_header():
    with open(os.path.join(REPO, "sdk", "panthera.h")) as f:
        text = f.read()
    return (int(re.search(r"#define PX_ABI_MAJOR (\d+)", text).group(1)),
            int(re.search(r"#define PX_ABI_MINOR (\d+)", text).group(1)))


class Sdk:
    pass


@pytest.fixture(scope="module")
def sdk():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip("needs %s" % ", ".join(missing))
    tmp = tempfile.mkdtemp(prefix="panthera-sdk-")
    try:
        d = Sdk()
        d.tmp = tmp
        d.destdir = os.path.join(tmp, "dest")
        rc, out, err = run(["meson", "install", "-C", BUILD, "--destdir", d.destdir,
                            "--no-rebuild", "--quiet"], timeout=120)
        assert rc == 0, "meson install failed:\n%s\n%s" % (out, err)
        pcs = glob.glob(os.path.join(d.destdir, "**", "panthera-sdk.pc"), recursive=True)
        assert len(pcs) == 1, "panthera-sdk.pc installed %d times: %r" % (len(pcs), pcs)
        d.pc = pcs[0]
        d.env = {k: v for k, v in os.environ.items()
                 if k not in ("CFLAGS", "CPPFLAGS", "LDFLAGS", "LDLIBS", "PKG_CONFIG_LIBDIR",
                              "C_INCLUDE_PATH", "CPATH", "LIBRARY_PATH")}
        d.env["PKG_CONFIG_PATH"] = os.path.dirname(d.pc)
        d.env["PKG_CONFIG_SYSROOT_DIR"] = d.destdir
        d.src = os.path.join(tmp, "hello-plugin")
        shutil.copytree(os.path.join(REPO, "sdk", "examples", "hello"), d.src,
                        ignore=shutil.ignore_patterns("*.so", "*.o", "meson.build"))
        d.make = run(["make", "-C", d.src], env=d.env, timeout=120)
        d.so = os.path.join(d.src, "hello.so")
        yield d
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pkgconf(sdk, *args):
    rc, out, err = run(["pkg-config"] + list(args) + ["panthera-sdk"], env=sdk.env)
    assert rc == 0, err
    return out.strip()


def unsysroot(sdk, path):
    """pkgconf prefixes PKG_CONFIG_SYSROOT_DIR to path variables; take it off again."""
    return path[len(sdk.destdir):] if path.startswith(sdk.destdir + "/") else path


def built(sdk):
    rc, out, err = sdk.make
    assert rc == 0 and os.path.exists(sdk.so), "make failed:\n%s\n%s" % (out, err)
    return out


def test_install_layout(sdk):
    assert os.path.isfile(os.path.join(sdk.destdir, "usr/local/include/panthera/panthera.h"))
    assert os.path.isfile(os.path.join(sdk.destdir, "usr/local/sbin/pantherad"))
    with open(os.path.join(sdk.destdir, "usr/local/include/panthera/panthera.h")) as a, \
            open(os.path.join(REPO, "sdk", "panthera.h")) as b:
        assert a.read() == b.read()


def test_pkg_config_variables(sdk):
    major, minor = abi_from_header()
    assert int(pkgconf(sdk, "--variable=abi_major")) == major
    assert int(pkgconf(sdk, "--variable=abi_minor")) == minor
    plugindir = unsysroot(sdk, pkgconf(sdk, "--variable=plugindir"))
    confdir = unsysroot(sdk, pkgconf(sdk, "--variable=confdir"))
    assert plugindir.startswith("/usr/local/") and plugindir.endswith("/panthera/plugins"), \
        plugindir
    assert confdir == "/usr/local/etc/panthera", confdir
    # The installed example went where plugin authors are told to put theirs ...
    assert os.path.isfile(os.path.join(sdk.destdir, plugindir.lstrip("/"), "hello.so"))
    # ... which is where the installed server looks, and where its config lives.
    rc, out, err = run([os.path.join(sdk.destdir, "usr/local/sbin/pantherad"), "-V"])
    assert rc == 0, err
    # The packaged plugins first, then where `make install` of an out-of-tree plugin goes.
    localplugindir = unsysroot(sdk, pkgconf(sdk, "--variable=localplugindir"))
    assert localplugindir == "/usr/local/lib/panthera/plugins", localplugindir
    assert "plugin_path: %s:%s" % (plugindir, localplugindir) in out.splitlines(), out
    assert "config: %s/pantherad.conf" % confdir in out.splitlines(), out
    assert "SDK ABI %d.%d" % (major, minor) in out.splitlines(), out
    cflags = pkgconf(sdk, "--cflags")
    assert "-I%s/usr/local/include" % sdk.destdir in cflags.split(), cflags
    assert "-ljansson" in pkgconf(sdk, "--libs").split()


def test_out_of_tree_build_uses_only_the_installed_sdk(sdk):
    out = built(sdk)
    cc_lines = [l for l in out.splitlines() if "hello.c" in l]
    assert cc_lines, out
    line = cc_lines[0]
    assert "-Wl,--no-undefined" in line, line
    includes = re.findall(r"-I\s*(\S+)", line)
    assert includes and all(i.startswith(sdk.destdir) for i in includes), line
    assert REPO not in line.replace(sdk.tmp, ""), "the build reached into the source tree: " + line


def _symbols(args, path):
    rc, out, err = run(["nm", "-D"] + args + [path])
    assert rc == 0, err
    syms = []
    for l in out.splitlines():
        parts = l.split()
        if len(parts) >= 2:
            syms.append((parts[-2], parts[-1].split("@")[0]))
    return syms


def test_no_server_symbols(sdk):
    built(sdk)
    undefined = _symbols(["--undefined-only"], sdk.so)
    names = {name for _, name in undefined}
    assert not [n for n in names if n.startswith(("px_", "PX_"))], names
    # Everything it needs comes from libc or jansson: nothing is left for pantherad.
    rc, out, err = run(["ldd", sdk.so])
    assert rc == 0, err
    libs = dict(re.findall(r"^\s*(\S+) => (\S+)", out, re.M))
    needed = {k.split(".so")[0] for k in libs}
    assert needed <= {"libc", "libjansson"}, out
    provided = set()
    for lib in libs.values():
        provided |= {name for kind, name in _symbols(["--defined-only"], lib)}
    strong = {name for kind, name in undefined if kind == "U"}
    assert strong - provided == set(), "undefined, not from libc/jansson: %r" % (strong - provided)
    assert any(n.startswith("json_") for n in names)


def test_exports_only_the_descriptor(sdk):
    built(sdk)
    exported = {name for kind, name in _symbols(["--defined-only"], sdk.so)
                if kind not in ("A",) and not name.startswith("_")}
    assert exported == {"px_plugin_info"}, exported


def _serve(sdk, **kwargs):
    s = Server(workers=1, plugins=("hello",), **kwargs)
    try:
        rc, out, err = s.check_config()
        assert rc == 0, err
        assert "(%s)" % sdk.so in out, "-t does not show the out-of-tree .so:\n" + out
        try:
            s.start(timeout=10)
        except ServerError as e:
            if "asan" in BUILD.lower() and "Sanitizer" in str(e):
                pytest.skip("a non-instrumented .so does not load into this sanitizer build: "
                            "%s" % str(e)[-300:])
            raise
        r = requests.get(s.url("/v1/hello"), timeout=3)
        assert r.status_code == 200 and r.json() == {"message": "Hello, World!"}, r.text
        r = requests.get(s.url("/v1/hello/Ann"), timeout=3)
        assert r.json() == {"message": "Hello, Ann!"}
        assert s.stop() == 0
    finally:
        s.cleanup()


def test_server_loads_it_with_load_path(sdk):
    built(sdk)
    _serve(sdk, plugin_config={"hello": {"load": sdk.so}})


def test_server_finds_it_first_on_plugin_path(sdk):
    built(sdk)
    _serve(sdk, extra_server={"plugin_path": sdk.src + ":" + PLUGIN_PATH})


# ---- panthera-plugin-new: a plugin with route specs, schemas, a migration and a test ----

PGHOST = os.environ.get("PANTHERA_PGHOST")


def _psql(db, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PGHOST, "-p",
                    os.environ.get("PANTHERA_PGPORT", "5432"), "-U",
                    os.environ.get("PANTHERA_PGUSER", "panthera"), "-d", db, "-c", sql],
                   check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def skeleton(sdk):
    """`panthera-plugin-new notes` as installed, built with `make` against the installed
    SDK alone (its panthera-embed-sql too), then `make install DESTDIR=...`."""
    bindir = os.path.join(sdk.destdir, "usr", "local", "bin")
    src = os.path.join(sdk.tmp, "notes")
    rc, out, err = run([os.path.join(bindir, "panthera-plugin-new"), "notes", src])
    assert rc == 0, err
    # CFLAGS from the environment: the Makefile appends the SDK's flags to it.
    env = dict(sdk.env, PANTHERA_EMBED_SQL=os.path.join(bindir, "panthera-embed-sql"),
               PANTHERA_EMBED_SCHEMAS=os.path.join(bindir, "panthera-embed-schemas"),
               CFLAGS="-O2 -Wall -Wextra -Wpedantic -Werror")
    make = run(["make", "-C", src], env=env, timeout=180)
    assert make[0] == 0, "make failed:\n%s\n%s" % make[1:]
    stage = os.path.join(sdk.tmp, "notes-stage")
    inst = run(["make", "-C", src, "install", "DESTDIR=" + stage], env=env, timeout=60)
    assert inst[0] == 0, "make install failed:\n%s\n%s" % inst[1:]
    return src, make[1], stage


def test_new_plugin_builds_several_files_and_installs_under_usr_local(sdk, skeleton):
    src, out, stage = skeleton
    for f in ("notes.c", "items.c", "notes_schemas.c", "notes_migrations.c"):
        line = [l for l in out.splitlines() if l.endswith(" " + f)]
        assert line and "-I%s/usr/local/include" % sdk.destdir in line[0], (f, out)
    assert os.path.isfile(os.path.join(src, "migrations", "001_items.sql"))
    # pkgconf prefixes its sysroot (the SDK's destdir here) to PLUGINDIR and CONFDIR: look
    # for where each file ends.
    sos = glob.glob(os.path.join(stage, "**", "notes.so"), recursive=True)
    assert len(sos) == 1 and sos[0].endswith("/usr/local/lib/panthera/plugins/notes.so"), sos
    confdir = unsysroot(sdk, pkgconf(sdk, "--variable=confdir"))
    dropins = glob.glob(os.path.join(stage, "**", "50-notes.conf"), recursive=True)
    assert len(dropins) == 1 and dropins[0].endswith(confdir + "/plugins-available/50-notes.conf"), \
        dropins
    with open(dropins[0]) as f:
        assert "[plugin:notes]" in f.read().splitlines()


@pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
def test_new_plugin_serves_and_passes_its_own_test(sdk, skeleton):
    src, _, _ = skeleton
    db = "newplugin_" + uuid.uuid4().hex[:10]
    _psql("panthera", "CREATE DATABASE " + db)
    conninfo = "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"), db,
        os.environ.get("PANTHERA_PGUSER", "panthera"))
    s = Server(workers=1, plugins=("notes",),
               plugin_config={"notes": {"load": os.path.join(src, "notes.so")}},
               sections={"postgres": {"conninfo": conninfo}})
    try:
        try:
            s.start(timeout=30)
        except ServerError as e:
            if "asan" in BUILD.lower() and "Sanitizer" in str(e):
                pytest.skip("a non-instrumented .so does not load into this sanitizer build")
            raise
        rc, out, err = run(["make", "-C", src, "check"], env=dict(sdk.env, PANTHERA_URL=s.url("")),
                           timeout=120)
        assert rc == 0 and "11 passed, 0 failed" in out, out + err
        import openapi_check
        openapi_check.validate(requests.get(s.url("/openapi.json"), timeout=10).json())
    finally:
        s.cleanup()
        _psql("panthera", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
