"""Built policies are cached on disk: the next process loads the same policy; any change to
a file it came from (or to fastanon) builds it again; a cache that cannot be used is ignored."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fastanon import _cache
from fastanon.categories import identity_tags
from fastanon.policy import Policy, _cached, _from_data, _to_data, build
from fastanon import presets


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FASTANON_CACHE", str(folder))
    return folder


def _built(path) -> Policy:
    return build(presets.spec_of(path))


def _counted(path):
    """A builder of the policy file at path for _cached, and the list its calls go into."""
    calls = []

    def make(read):
        calls.append(1)
        return build(presets.spec_of(path, read=read))

    return make, calls


@pytest.mark.parametrize("name", presets.names())
def test_a_preset_as_plain_data_is_the_same_policy(name):
    policy = Policy.preset(name)
    again = _from_data(_to_data(policy))
    assert again == policy
    assert again.reasons == policy.reasons and again.mask_reasons == policy.mask_reasons
    assert again.private_reason == policy.private_reason


def test_a_policy_file_is_loaded_from_the_cache_until_it_changes(cache, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('extends = "research"\n[tags]\nPatientAge = "keep"\n')
    make, calls = _counted(path)
    first = _cached("file:test", make)
    assert len(calls) == 1 and len(list(cache.iterdir())) == 1
    assert _cached("file:test", make) == first and len(calls) == 1     # loaded, not built
    time.sleep(0.01)
    path.write_text('extends = "research"\n[tags]\nPatientAge = "remove"\n')
    changed = _cached("file:test", make)
    assert len(calls) == 2
    assert changed.action_for(0x00101010).name == "remove" == _built(path).action_for(0x00101010).name


def test_a_file_it_extends_counts_too(cache, tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('extends = "internal"\n')
    site = tmp_path / "site.toml"
    site.write_text('extends = "base.toml"\n')
    assert Policy.from_file(site).action_for(0x00080020).name == "keep"     # StudyDate
    time.sleep(0.01)
    base.write_text('extends = "research"\n')
    assert Policy.from_file(site) == _built(site)
    assert Policy.from_file(site).action_for(0x00080020).name != "keep"


def test_a_broken_or_foreign_entry_is_built_again(cache, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('extends = "internal"\n')
    expected = _built(path)
    assert Policy.from_file(path) == expected
    (entry,) = cache.iterdir()
    for junk in (b"", b"\x00garbage", b"\xfa" * 64):
        entry.write_bytes(junk)
        assert Policy.from_file(path) == expected
    assert _cache.load("nothing stored under this") is None


def test_an_unwritable_cache_is_ignored(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FASTANON_CACHE", str(blocker / "cache"))
    path = tmp_path / "site.toml"
    path.write_text('extends = "internal"\n')
    assert Policy.from_file(path) == _built(path)


def test_a_new_process_loads_the_preset_and_the_identity_tags(cache):
    """A second process takes research and the identity tags from the cache: it builds nothing
    (no TOML read), and its compiled plan equals one built from scratch."""
    code = ("import sys\nfrom fastanon.policy import Policy\nfrom fastanon.categories import "
            "identity_tags\np = Policy.preset('research')\nplan = p.compile(key=b'k')\n"
            "print('tomllib' in sys.modules, len(identity_tags()), plan.selection[0].tobytes().hex()"
            "[:64], len(plan.actions), plan.additions == tuple(plan.additions))\n")
    env = {**os.environ, "FASTANON_CACHE": str(cache)}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split()[0] == "True" and second.stdout.split()[0] == "False"
    assert first.stdout.split()[1:] == second.stdout.split()[1:]
    assert int(second.stdout.split()[1]) == len(identity_tags())


def test_an_entry_others_may_write_is_not_trusted(cache, tmp_path):
    """An entry that is group- or world-writable is built again (and replaced, private)."""
    path = tmp_path / "site.toml"
    path.write_text('extends = "internal"\n')
    make, calls = _counted(path)
    _cached("file:trust", make)
    (entry,) = cache.iterdir()
    assert entry.stat().st_mode & 0o077 == 0
    entry.chmod(0o666)
    _cached("file:trust", make)
    assert len(calls) == 2
    (entry,) = cache.iterdir()
    assert entry.stat().st_mode & 0o077 == 0
    _cached("file:trust", make)
    assert len(calls) == 2
