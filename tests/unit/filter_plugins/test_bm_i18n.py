# SPDX-License-Identifier: Apache-2.0
"""filter_plugins/bm_i18n.py and the catalogues in i18n/ (ja and en)."""

from __future__ import annotations

import io
import re

import bm_i18n
import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from helpers import ROOT

FIELD = re.compile(r"{(\w+)}")


def catalogue(lang):
    with open(ROOT / "i18n" / lang / "LC_MESSAGES" / "bmops.po", "rb") as fh:
        return read_po(fh, locale=lang)


def messages(lang) -> dict[str, str]:
    return {m.id: m.string for m in catalogue(lang) if m.id}


def test_both_catalogues_have_every_message_with_the_same_fields():
    ja, en = messages("ja"), messages("en")
    assert set(ja) == set(en), set(ja) ^ set(en)
    for msgid in ja:
        assert ja[msgid] and en[msgid], msgid
        assert set(FIELD.findall(ja[msgid])) == set(FIELD.findall(en[msgid])), msgid
    # Japanese really is Japanese where the manual has a term
    assert ja["daily.item.health_ready"] == "システム稼働確認"
    assert ja["daily.item.job_success_rate"] == "バックアップジョブ成功率"
    assert ja["daily.item.storage_usage"] == "ストレージ使用率"


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_compiled_catalogue_is_current(lang):
    buf = io.BytesIO()
    write_mo(buf, catalogue(lang))
    mo = ROOT / "i18n" / lang / "LC_MESSAGES" / "bmops.mo"
    assert mo.read_bytes() == buf.getvalue(), f"{mo} is stale: run `make i18n`"


def test_translate_fills_fields_and_names_what_is_missing():
    assert bm_i18n.translate("status.breach", "ja") == "異常"
    assert bm_i18n.translate("daily.criterion.storage_usage", "en", limit=80) == "under 80 %"
    assert bm_i18n.translate("daily.criterion.storage_usage", "ja", limit=80) == "80% 未満"
    with pytest.raises(bm_i18n.I18nError, match=r"'no\.such\.id' is missing from the ja"):
        bm_i18n.translate("no.such.id", "ja")
    with pytest.raises(bm_i18n.I18nError, match="bm_language is 'fr'"):
        bm_i18n.translate("status.ok", "fr")
    with pytest.raises(bm_i18n.I18nError, match="needs the field 'limit'"):
        bm_i18n.translate("daily.criterion.storage_usage", "en")


def test_local_time_shows_the_zone_and_its_offset():
    assert bm_i18n.local_time("2026-12-02T00:00:00Z", "Asia/Tokyo") == \
        "2026-12-02 09:00 JST (+09:00)"
    assert bm_i18n.local_time("2026-12-02T00:00:00+00:00", "UTC") == \
        "2026-12-02 00:00 UTC (+00:00)"
    # naive and epoch inputs are UTC, as every machine output of bmops is
    assert bm_i18n.local_time("2026-12-02T00:00:00", "Asia/Tokyo", seconds=True) == \
        "2026-12-02 09:00:00 JST (+09:00)"
    assert bm_i18n.local_time(0, "Asia/Tokyo") == "1970-01-01 09:00 JST (+09:00)"
    # a zone with daylight saving time: the offset of that day
    assert bm_i18n.local_time("2026-07-01T12:00:00Z", "America/New_York") == \
        "2026-07-01 08:00 EDT (-04:00)"
    assert bm_i18n.local_time("2026-12-01T12:00:00Z", "America/New_York") == \
        "2026-12-01 07:00 EST (-05:00)"
    # a backup id is a name in local time, not an instant: it is not read as one
    with pytest.raises(bm_i18n.I18nError, match="created_utc"):
        bm_i18n.local_time("20261201_180000", "Asia/Tokyo")
    with pytest.raises(bm_i18n.I18nError, match="unknown time zone 'Mars/Base'"):
        bm_i18n.local_time(0, "Mars/Base")


def test_local_date_around_midnight_utc():
    # 23:30 UTC on the 1st is already the 2nd in Tokyo, still the 1st in UTC
    assert bm_i18n.local_date("2026-12-01T15:30:00Z", "Asia/Tokyo") == "2026-12-02"
    assert bm_i18n.local_date("2026-12-01T14:59:59Z", "Asia/Tokyo") == "2026-12-01"
    assert bm_i18n.local_date("2026-12-01T23:30:00Z", "UTC") == "2026-12-01"
