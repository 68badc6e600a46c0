"""What an operator is told when something is wrong (issue 12, item 5): each message names
the real cause, not a neighbouring one.

- a descriptor with a wrong magic number is reported as such, not as "no descriptor";
- a reload whose plugins do not load (route clash, ABI refusal) says so, with or without
  a database (with one, the migrator is the first to load them; without, the new workers);
- `pantherad -t` lists the host's own routes beside the plugins';
- `panthera-plugin enable` refuses a plugin whose .so is gone, and says why.
"""
import os
import re
import shutil
import signal
import subprocess

import pytest

from panthera_server import BUILD, PANTHERAD, REPO, Server, ServerError

PGHOST = os.environ.get("PANTHERA_PGHOST")
PANTHERA_PLUGIN = os.path.join(REPO, "packaging", "tools", "panthera-plugin")


@pytest.fixture
def conf():
    made = []

    def make(**kwargs):
        s = Server(**kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


def pg_sections():
    return {"postgres": {"conninfo": "host=%s port=%s dbname=%s user=%s" % (
        PGHOST, os.environ.get("PANTHERA_PGPORT", "5432"),
        os.environ.get("PANTHERA_PGDATABASE", "panthera"),
        os.environ.get("PANTHERA_PGUSER", "panthera"))}}


# ---------------------------------------------------------------- the descriptor

def test_wrong_magic_is_not_reported_as_missing_descriptor(conf):
    s = conf(plugins=("hello", "bad_magic"))
    rc, out, err = s.check_config()
    assert rc != 0
    line = [l for l in err.splitlines() if "bad_magic" in l]
    assert len(line) == 1, err
    assert "magic number 0xdeadbeef, not 0x5058504c" in line[0], line[0]
    assert "no px_plugin_info descriptor" not in line[0], line[0]
    assert "PX_PLUGIN()" in line[0]


def test_missing_descriptor_still_says_so(conf):
    s = conf(plugins=("hello", "no_descriptor"))
    rc, out, err = s.check_config()
    assert rc != 0
    assert "no px_plugin_info descriptor" in err, err
    assert "magic number" not in err, err


# ---------------------------------------------------------------- -t lists every route

def test_check_lists_the_host_routes(conf):
    s = conf(plugins=("hello",))
    rc, out, err = s.check_config()
    assert rc == 0, err
    routes = re.findall(r"^\s+(GET|POST|PUT|DELETE|PATCH)\s+(\S+)\s+(\S+)$", out, re.M)
    host = {path for method, path, owner in routes if owner == "host"}
    assert host == {"/healthz", "/readyz", "/metrics", "/openapi.json"}, out
    assert ("GET", "/v1/hello", "hello") in routes, out


def test_a_plugin_claiming_a_host_route_is_a_route_clash(conf):
    s = conf(plugins=("hello", "claims_readyz"))
    rc, out, err = s.check_config()
    assert rc != 0
    assert 'plugin "claims_readyz": route: GET /readyz is already claimed by plugin "host"' \
        in err, err


def test_a_plugin_claiming_a_host_route_is_refused_at_start_not_aborted(conf):
    """The workers used to register /readyz after loading the plugins, and a clash there
    was an abort() in every worker, respawned with back-off: now start-up stops with the
    clash, as for any other."""
    s = conf(plugins=("hello", "claims_readyz"), workers=1)
    with pytest.raises(ServerError):
        s.start(timeout=10)
    log = s.error_log()
    assert 'GET /readyz is already claimed by plugin "host"' in log, log
    assert "signal" not in log, log


# ---------------------------------------------------------------- reload refusals

BROKEN_PLUGINS = {
    # dup_route claims GET /v1/hello/:who, which hello already has
    "route_clash": ("dup_route", 'already claimed by plugin "hello"'),
    "abi_refusal": ("abi_minor", "is not binary compatible"),
}


def reload_into(s, plugin):
    with open(os.path.join(s.conf_dir, "90-%s.conf" % plugin), "w") as f:
        f.write("[plugin:%s]\n" % plugin)
    s.signal(signal.SIGHUP)
    return s.wait_error_log("reload failed", timeout=30)


@pytest.mark.parametrize("kind", sorted(BROKEN_PLUGINS))
@pytest.mark.skipif(not PGHOST, reason="PANTHERA_PGHOST is unset: no PostgreSQL")
def test_reload_with_database_names_the_plugins_not_migrations(make_server, kind):
    plugin, needle = BROKEN_PLUGINS[kind]
    s = make_server(workers=1, plugins=("hello",), sections=pg_sections())
    log = reload_into(s, plugin)
    failed = [l for l in log.splitlines() if "reload failed" in l]
    assert len(failed) == 1, log
    assert "the plugins do not load" in failed[0], failed[0]
    assert "migrations" not in failed[0], failed[0]
    assert needle in log, log
    assert s.running()


@pytest.mark.parametrize("kind", sorted(BROKEN_PLUGINS))
def test_reload_without_database_names_the_plugins(make_server, kind):
    plugin, needle = BROKEN_PLUGINS[kind]
    s = make_server(workers=1, plugins=("hello",))
    log = reload_into(s, plugin)
    failed = [l for l in log.splitlines() if "reload failed" in l]
    assert len(failed) == 1, log
    assert "refused the configuration or its plugins" in failed[0], failed[0]
    assert needle in log, log
    assert s.running()


# ---------------------------------------------------------------- panthera-plugin enable

@pytest.fixture
def admin(conf, tmp_path):
    """A config tree laid out as /etc/panthera, with hello's .so in a directory of its own
    so a test can remove it."""
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(os.path.join(BUILD, "sdk", "examples", "hello", "hello.so"), lib / "hello.so")
    s = conf(plugins=(), extra_server={"plugin_path": str(lib)})
    avail = os.path.join(s.tmp, "plugins-available")
    os.makedirs(avail)
    with open(os.path.join(avail, "10-hello.conf"), "w") as f:
        f.write("[plugin:hello]\n")
    env = dict(os.environ, PANTHERA_CONFDIR=s.tmp, PANTHERAD=PANTHERAD,
               PANTHERA_STATEDIR=str(tmp_path / "state"), PANTHERA_PIDFILE=s.pid_file)

    def run(*args):
        return subprocess.run(["sh", PANTHERA_PLUGIN, *args], env=env, capture_output=True,
                              text=True, timeout=60)

    return s, lib, run


def test_enable_refuses_a_plugin_whose_so_was_removed(admin):
    s, lib, run = admin
    os.unlink(lib / "hello.so")
    r = run("enable", "hello")
    assert r.returncode != 0, r
    assert "not enabling hello" in r.stderr, r.stderr
    assert 'cannot find hello.so along plugin_path' in r.stderr, r.stderr
    assert not os.path.lexists(os.path.join(s.conf_dir, "10-hello.conf"))
    assert re.search(r"^hello\s+disabled", run("list").stdout, re.M)


def test_enable_accepts_the_plugin_when_its_so_is_there(admin):
    s, lib, run = admin
    r = run("enable", "hello")
    assert r.returncode == 0, r
    assert os.readlink(os.path.join(s.conf_dir, "10-hello.conf")) == \
        "../plugins-available/10-hello.conf"
    rc, out, err = s.check_config()
    assert rc == 0 and "hello" in out, err


def test_enable_is_not_blocked_by_another_plugins_error(admin):
    """Only this plugin's own load errors count: a broken neighbour is pantherad -t's to
    report, and must not make every enable fail."""
    s, lib, run = admin
    with open(os.path.join(s.conf_dir, "50-other.conf"), "w") as f:
        f.write("[plugin:nosuchplugin]\n")
    r = run("enable", "hello")
    assert r.returncode == 0, r
    assert os.path.islink(os.path.join(s.conf_dir, "10-hello.conf"))
