# SPDX-License-Identifier: Apache-2.0
"""bmops_backup.infofile: backup file names."""

from __future__ import annotations

import json

import pytest
from bmops_backup.config import load_config
from bmops_backup.exceptions import ToolError
from bmops_backup.infofile import new_id, parse_name
from bmops_backup.utils import local_stamp, zone


@pytest.mark.parametrize("name,expected", [
    ("20260225_030000.sql.gz", {"id": "20260225_030000", "format": "sql_gz", "partial": False}),
    ("20260225_030000_2.dump.zst", {"id": "20260225_030000_2", "codec": "zstd"}),
    ("20260225_030000.dump.gz.partial", {"format": "custom", "codec": "gzip", "partial": True}),
    ("20260225_030000.json", None),
    ("backup.sql.gz", None),
    ("20260225_0300.sql.gz", None),
])
def test_parse_name(name, expected):
    got = parse_name(name)
    if expected is None:
        assert got is None
    else:
        assert {k: got[k] for k in expected} == expected


def test_names_are_local_time_like_the_manuals():
    # 2026-02-24 18:00 UTC is 03:00 on the 25th in Tokyo: the manual's 20260225_030000
    assert local_stamp(1771956000, zone("Asia/Tokyo")) == (
        "20260225_030000", "Asia/Tokyo", "+09:00")
    assert local_stamp(1771956000, zone("UTC")) == ("20260224_180000", "UTC", "+00:00")


def test_the_autumn_hour_a_dst_zone_repeats_gets_distinct_names(tmp_path):
    ny = zone("America/New_York")
    first, second = 1793511000, 1793514600  # 2026-11-01 01:30 EDT, then 01:30 EST
    assert local_stamp(first, ny) == ("20261101_013000", "America/New_York", "-04:00")
    assert local_stamp(second, ny) == ("20261101_013000", "America/New_York", "-05:00")
    assert new_id(str(tmp_path), first, ny) == "20261101_013000"
    (tmp_path / "20261101_013000.json").write_text("{}")
    assert new_id(str(tmp_path), second, ny) == "20261101_013000_1"
    (tmp_path / "20261101_013000_1.dir.tar.partial").write_text("")
    assert new_id(str(tmp_path), second, ny) == "20261101_013000_2"


def test_the_host_zone_is_the_one_etc_localtime_names(monkeypatch):
    monkeypatch.setattr("os.path.realpath", lambda _p: "/usr/share/zoneinfo/Asia/Tokyo")
    assert zone("").key == "Asia/Tokyo"


def test_an_unknown_zone_in_the_config_is_a_usage_error(tmp_path):
    cfg = tmp_path / "backup.json"
    cfg.write_text(json.dumps({"timezone": "Mars/Olympus"}))
    cfg.chmod(0o600)
    with pytest.raises(ToolError, match="Mars/Olympus"):
        load_config(str(cfg))
