"""Loading plugins and checking configurations: `pantherad -t`, `-V`, `-h`, and the
refusals an operator sees (ABI, dependencies, route clashes, not-a-plugin, not found).

Local fixture ``conf``: a factory for *unstarted* Servers (config files only), removed
at the end of the test; ``make_server`` (conftest) is used when a test starts one.
"""
import json
import os
import re

import pytest
import requests

from panthera_server import BUILD, REPO, Server, ServerError, header_abi


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


def project_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        return re.search(r"version:\s*'([^']+)'", f.read()).group(1)


def error_lines(stderr):
    """The per-problem lines of a failed -t (without the final summary line)."""
    return [l for l in stderr.splitlines() if l.strip() and "has errors" not in l]


def start_refused(s):
    """Start `s`, expect the master to exit non-zero on its own, not to be stopped by
    start() giving up on /healthz. Returns (exit code, error log)."""
    with pytest.raises(ServerError) as e:
        s.start()
    assert "exited with" in str(e.value), "the master did not give up by itself:\n%s" % e.value
    return s.proc.returncode, s.error_log()


# ---------------------------------------------------------------------------- -t

def test_check_good_config(conf):
    s = conf(plugins=("hello", "testkit"))
    rc, out, err = s.check_config()
    assert rc == 0, err
    assert re.search(r"^configuration.*OK$", out, re.M), out
    assert re.search(r"^\s+hello 1\.0\.0 \(.*/hello\.so\)$", out, re.M), out
    assert re.search(r"^\s+testkit 1\.0\.0 \(.*/testkit\.so\)$", out, re.M), out
    routes = {tuple(l.split()) for l in out.split("routes:")[1].splitlines() if l.strip()}
    assert ("GET", "/v1/hello", "hello") in routes, out
    assert ("GET", "/v1/hello/:name", "hello") in routes, out
    assert ("GET", "/v1/test/crash", "testkit") in routes, out
    assert ("GET", "/healthz", "host") in routes, out
    assert err.strip() == ""


def test_check_syntax_error_in_dropin(conf):
    s = conf(dropins={"50-broken.conf": "[http]\nmax_headers = 50\nthis is not an assignment\n"})
    path = os.path.join(s.conf_dir, "50-broken.conf")
    rc, out, err = s.check_config()
    assert rc != 0
    assert "%s:3:" % path in err, err
    assert "syntax error" in err
    assert "configuration OK" not in out


def test_check_unknown_server_key(conf):
    s = conf(extra_server={"bogus_key": "1"})
    rc, out, err = s.check_config()
    assert rc != 0
    with open(s.conf_path) as f:
        line = next(i for i, l in enumerate(f, 1) if l.startswith("bogus_key"))
    assert '%s:%d: unknown key "bogus_key" in [server]' % (s.conf_path, line) in err, err


def test_check_unknown_plugin_key_lists_accepted_keys(conf):
    s = conf(plugins=("hello",), plugin_config={"hello": {"greeting": "Hi", "colour": "blue"}})
    path = os.path.join(s.conf_dir, "10-hello.conf")
    rc, out, err = s.check_config()
    assert rc != 0
    lines = [l for l in error_lines(err) if "colour" in l]
    assert len(lines) == 1, err
    assert "%s:3:" % path in lines[0], err
    assert "[plugin:hello]" in lines[0]
    assert re.search(r"accepts: .*\bgreeting\b", lines[0]), lines[0]


def test_check_reports_every_error(conf):
    s = conf(plugins=("hello",),
             dropins={"50-a.conf": "[server]\nfoo = 1\n\n[http]\nbar = 2\nmax_body_size = lots\n",
                      "60-b.conf": "[http]\n\nnot an assignment\n"})
    rc, out, err = s.check_config()
    assert rc != 0
    a = os.path.join(s.conf_dir, "50-a.conf")
    b = os.path.join(s.conf_dir, "60-b.conf")
    for needle in ("%s:2:" % a, "%s:5:" % a, "%s:6:" % a, "%s:3:" % b):
        assert needle in err, (needle, err)
    assert len(error_lines(err)) == 4, err


def test_check_reports_every_plugin_key_error(conf):
    s = conf(plugins=("hello", "testkit"),
             plugin_config={"hello": {"colour": "x"}, "testkit": {"flavour": "y"}})
    rc, out, err = s.check_config()
    assert rc != 0
    assert 'unknown key "colour" in [plugin:hello]' in err, err
    assert 'unknown key "flavour" in [plugin:testkit]' in err, err


# ---------------------------------------------------------------------------- refusals

def test_abi_major_refused_by_check(conf):
    major, minor = header_abi()
    s = conf(plugins=("hello", "abi_major"))
    rc, out, err = s.check_config()
    assert rc != 0
    lines = [l for l in error_lines(err) if "abi_major" in l]
    assert len(lines) == 1, err
    line = lines[0]
    assert "%s:1:" % os.path.join(s.conf_dir, "20-abi_major.conf") in line
    assert 'plugin "abi_major"' in line
    assert "needs SDK ABI %d.0, this host has ABI %d.%d" % (major + 1, major, minor) in line
    assert "rebuild" in line
    assert "upgrade" not in line


def test_abi_major_refused_at_start_without_spinning(conf):
    major, minor = header_abi()
    s = conf(plugins=("hello", "abi_major"), workers=2)
    rc, log = start_refused(s)
    assert rc not in (0, None), log
    assert "needs SDK ABI %d.0, this host has ABI %d.%d" % (major + 1, major, minor) in log
    assert "rebuild" in log
    # Each worker may say it once; nobody retries.
    assert 1 <= log.count("is not binary compatible") <= 2, log


def test_abi_minor_refused_with_upgrade_advice(conf):
    major, minor = header_abi()
    s = conf(plugins=("hello", "abi_minor"))
    rc, out, err = s.check_config()
    assert rc != 0
    lines = [l for l in error_lines(err) if "abi_minor" in l]
    assert len(lines) == 1, err
    assert "needs SDK ABI %d.%d, this host has ABI %d.%d" % (major, minor + 1, major, minor) \
        in lines[0]
    assert "upgrade" in lines[0]


def test_missing_dependency_refused(conf):
    s = conf(plugins=("hello", "needs_missing"))
    rc, out, err = s.check_config()
    assert rc != 0
    assert 'plugin "needs_missing" depends on "nonexistent", which is not enabled' in err, err
    assert "%s:1:" % os.path.join(s.conf_dir, "20-needs_missing.conf") in err


def test_duplicate_route_names_both_plugins(conf):
    s = conf(plugins=("hello", "dup_route"))
    rc, out, err = s.check_config()
    assert rc != 0
    lines = [l for l in error_lines(err) if "/v1/hello/" in l]
    assert len(lines) == 1, err
    assert '"dup_route"' in lines[0] and '"hello"' in lines[0], lines[0]
    assert "/v1/hello/:who" in lines[0] and "/v1/hello/:name" in lines[0], lines[0]


def test_duplicate_route_refused_at_start(conf):
    s = conf(plugins=("hello", "dup_route"), workers=1)
    rc, log = start_refused(s)
    assert rc not in (0, None), (rc, log)
    assert 'already claimed by plugin "hello"' in log, log


def test_no_descriptor_is_not_a_plugin(conf):
    s = conf(plugins=("hello", "no_descriptor"))
    rc, out, err = s.check_config()
    assert rc != 0
    assert re.search(r'plugin "no_descriptor": \S+no_descriptor\.so is not a Panthera plugin', err), err


def test_plugin_not_found(conf):
    s = conf(plugins=("hello", "nosuchplugin"))
    rc, out, err = s.check_config()
    assert rc != 0
    lines = [l for l in error_lines(err) if "nosuchplugin" in l]
    assert len(lines) == 1, err
    assert "cannot find nosuchplugin.so along plugin_path" in lines[0]
    assert os.path.join(BUILD, "tests/plugins") in lines[0]  # says where it looked
    assert "load = " in lines[0]  # and how to point at it


def test_plugin_not_found_at_start(conf):
    s = conf(plugins=("hello", "nosuchplugin"), workers=2)
    rc, log = start_refused(s)
    assert rc not in (0, None), (rc, log)
    assert "cannot find nosuchplugin.so" in log


def test_load_path_that_does_not_exist(conf):
    s = conf(plugins=("hello",), plugin_config={"hello": {"load": "/nonexistent/dir/hello.so"}})
    rc, out, err = s.check_config()
    assert rc != 0
    assert "%s:2:" % os.path.join(s.conf_dir, "10-hello.conf") in err, err
    assert "/nonexistent/dir/hello.so" in err


def test_dependencies_initialise_first(conf):
    """dup_route depends on hello. Its drop-in sorts first (05- before 10-), yet hello must
    be initialised first: so it is dup_route's route that clashes with hello's, not the
    other way round. (A clean ordering check in -t's plugin list would need a dependent
    plugin without the clash; there is none among the test plugins.)"""
    s = conf(plugins=("hello",), dropins={"05-dup_route.conf": "[plugin:dup_route]\n"})
    rc, out, err = s.check_config()
    assert rc != 0
    assert 'plugin "dup_route": route: GET /v1/hello/:who is already claimed by plugin "hello"' \
        in err, err


def test_plugins_listed_in_load_order(conf):
    """Without dependencies, -t lists plugins in drop-in order."""
    s = conf(plugins=("testkit", "hello"))
    rc, out, err = s.check_config()
    assert rc == 0, err
    names = re.findall(r"^\s+(\w+) \d+\.\d+\.\d+ \(", out, re.M)
    assert names == ["testkit", "hello"], out


# ---------------------------------------------------------------------------- command line

def test_version(conf):
    major, minor = header_abi()
    s = conf()
    rc, out, err = s.run_binary("-V")
    assert rc == 0, err
    assert out.splitlines()[0] == "pantherad %s" % project_version()
    assert "SDK ABI %d.%d" % (major, minor) in out.splitlines()
    with open(os.path.join(BUILD, "meson-info", "intro-buildoptions.json")) as f:
        opts = {o["name"]: o["value"] for o in json.load(f)}
    prefix = opts["prefix"]
    sysconf = os.path.join(prefix, opts["sysconfdir"])
    plugindir = os.path.join(prefix, opts["libdir"], "panthera", "plugins")
    assert "config: %s" % os.path.join(sysconf, "panthera", "pantherad.conf") in out, out
    assert "plugin_path: %s" % plugindir in out, out


def test_help(conf):
    rc, out, err = conf().run_binary("-h")
    assert rc == 0
    assert out.startswith("usage: pantherad")
    for opt in ("-c FILE", "-t", "-V", "-h"):
        assert opt in out


@pytest.mark.parametrize("args", [("-Z",), ("--no-such-option",), ("stray",)])
def test_bad_command_line_exits_2(conf, args):
    rc, out, err = conf().run_binary(*args)
    assert rc == 2, (rc, out, err)
    assert "usage: pantherad" in err
    assert out == ""


def test_missing_config_file(conf):
    s = conf()
    missing = os.path.join(s.tmp, "nope.conf")
    rc, out, err = s.run_binary("-t", "-c", missing)
    assert rc != 0
    assert missing in err and "cannot open" in err, err


def test_frozen_1_1_plugin_and_min_minor_1_plugin_load_and_work(make_server):
    """The 1.1 header is frozen (tests/plugins/abi_1_1 holds it as it was): a plugin built
    against it loads here and its 1.1 calls land in the right slots; a plugin built against
    this header with PX_MIN_MINOR 1 states 1.1 in its descriptor and guards 1.2 calls with
    PX_HAS, whose false branch it checks against a table cut to the 1.1 size."""
    s = make_server(workers=1, plugins=("abi_1_1", "minor1"))
    r = requests.get(s.url("/v1/abi11"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"abi": "1.1", "host_abi_minor": header_abi()[1], "has_work": True,
                        "host_table_larger": True, "job": "ran"}
    r = requests.get(s.url("/v1/minor1"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"descriptor_minor": 1, "has_task_begin": True, "is_task": 0,
                        "older_table_has_task_begin": False, "older_table_has_work": True}
