# SPDX-License-Identifier: Apache-2.0
"""Texts for people in their language, and times in their time zone: pure functions.

Every human-facing text of a report or a mail is a message id looked up in the
gettext catalogues ``i18n/<lang>/LC_MESSAGES/bmops.mo`` (compiled by Babel from
the ``.po`` beside it: ``make i18n``)::

    {{ 'daily.item.health_ready' | bm_t(bm_language) }}
    {{ 'daily.forecast.storage' | bm_t(bm_language, days=9, threshold=80) }}

A missing id or language is an error that names it: a report never shows an id
instead of a sentence. Placeholders are ``str.format`` fields ({days}).

A sentence built as data elsewhere (``{id, fields}``, as the checks of
``bm_checks`` carry it in ``msg``) is rendered with ``bm_msg``; a field that is
itself ``{id, fields}`` is translated too. ``bm_check_text`` is a check's sentence.

Times for people are shown in the managed host's time zone with its offset
(``2026-12-02 09:00 JST (+09:00)``); machine outputs stay UTC.
"""

from __future__ import annotations

import datetime
import gettext
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LOCALE_DIR = Path(__file__).resolve().parent.parent / "i18n"
DOMAIN = "bmops"
LANGUAGES = ("ja", "en")
_CACHE: dict[str, gettext.GNUTranslations] = {}


class I18nError(ValueError):
    """A message id, language or time zone that does not exist; the text names it."""


def catalogue(lang: str) -> gettext.GNUTranslations:
    if lang not in LANGUAGES:
        raise I18nError(f"bm_language is {lang!r}; it must be one of {', '.join(LANGUAGES)}")
    if lang not in _CACHE:
        path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
        try:
            with open(path, "rb") as fh:
                _CACHE[lang] = gettext.GNUTranslations(fh)
        except OSError as exc:
            raise I18nError(f"the {lang} catalogue {path} cannot be read ({exc}); "
                            "run `make i18n`") from None
    return _CACHE[lang]


def translate(msgid: str, lang: str = "en", **fields) -> str:
    """The text of MSGID in LANG, its {fields} filled in."""
    cat = catalogue(lang)
    text = cat.gettext(msgid)  # gettext answers the id itself when it is missing
    if not text or text == msgid:
        raise I18nError(f"message {msgid!r} is missing from the {lang} catalogue "
                        f"({LOCALE_DIR / lang / 'LC_MESSAGES' / (DOMAIN + '.po')})")
    try:
        return text.format(**fields)
    except (KeyError, IndexError) as exc:
        raise I18nError(f"message {msgid!r} ({lang}) needs the field {exc}") from None


def render(m, lang: str = "en") -> str:
    """M ({id, fields}; a field may be another such dict, or a list of them, joined
    with the language's separator) in LANG; a plain value as text."""
    if isinstance(m, list):
        return translate("list.sep", lang).join(render(x, lang) for x in m)
    if not isinstance(m, dict) or "id" not in m:
        return "" if m is None else str(m)
    fields = {k: render(v, lang) for k, v in (m.get("fields") or {}).items()}
    return translate(m["id"], lang, **fields)


def check_text(check: dict, lang: str = "en") -> str:
    """A check's sentence in LANG (its ``msg``); a check without one keeps its message."""
    if isinstance(check.get("msg"), dict):
        return render(check["msg"], lang)
    return str(check.get("message", ""))


def zone_name(link_target: str | None, fallback: str = "UTC") -> str:
    """The IANA name in the target of /etc/localtime (``/usr/share/zoneinfo/Asia/Tokyo``
    gives ``Asia/Tokyo``); FALLBACK when it names none."""
    text = str(link_target or "")
    if "zoneinfo/" not in text:
        return fallback
    name = text.split("zoneinfo/", 1)[1].strip("/")
    for prefix in ("posix/", "right/"):
        name = name.removeprefix(prefix)
    return name or fallback


def _parse(value) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    else:
        text = str(value).strip().replace("Z", "+00:00")
        if re.fullmatch(r"\d{8}_\d{6}(_\d+)?", text):
            raise I18nError(f"{text} is a backup id, a name in the host's local time, not an "
                            "instant: show the manifest's created_utc")
        moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:  # machine outputs are UTC
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise I18nError(f"unknown time zone {tz!r} (an IANA name, e.g. Asia/Tokyo)") from None


def local_time(value, tz: str = "UTC", seconds: bool = False) -> str:
    """VALUE (ISO 8601, epoch seconds or a datetime; naive means UTC) in the zone TZ:
    ``2026-12-02 09:00 JST (+09:00)``."""
    moment = _parse(value).astimezone(zone(tz))
    offset = moment.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}"
    name = moment.tzname() or offset
    shown = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{shown} {name} ({offset})" if name != offset else f"{shown} ({offset})"


def local_date(value, tz: str = "UTC") -> str:
    """The calendar date of VALUE in the zone TZ (``2026-12-02``)."""
    return _parse(value).astimezone(zone(tz)).strftime("%Y-%m-%d")


class FilterModule:
    def filters(self):
        return {
            "bm_t": translate,
            "bm_msg": render,
            "bm_check_text": check_text,
            "bm_zone_name": zone_name,
            "bm_local_time": local_time,
            "bm_local_date": local_date,
        }
