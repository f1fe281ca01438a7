"""Date shifts: a per-patient offset in whole days, applied to DA and DT values (PS3.5 §6.2).

Whole days keep every interval within a patient and leave times of day (TM) as they are; the
offset comes from HMAC-SHA256(key, PatientID), so all files of a patient move together.
"""

from __future__ import annotations

from .uids import keyed_hash

MIN_DAYS, MAX_DAYS = 365, 3650     # dates move back by 1 to 10 years


def patient_offset(key: bytes, patient_id: str) -> int:
    """Days to add (negative) to every date of this patient.

    >>> patient_offset(b"secret", "PAT-0001") == patient_offset(b"secret", "PAT-0001") < 0
    True
    """
    digest = keyed_hash(key, b"shift\0" + patient_id.encode("utf-8", "replace"))
    return -(MIN_DAYS + int.from_bytes(digest[:8], "big") % (MAX_DAYS - MIN_DAYS + 1))


def _shift_date(text: str, days: int) -> str | None:
    """YYYYMMDD, YYYYMM or YYYY shifted (the coarser forms by whole months or years); None if invalid."""
    if not text.isdigit() or len(text) not in (4, 6, 8):
        return None
    year = int(text[:4])
    if len(text) == 8:
        from datetime import date, timedelta     # only where a date moves

        try:
            moved = date(year, int(text[4:6]), int(text[6:8])) + timedelta(days=days)
        except (ValueError, OverflowError):
            return None
        return f"{moved:%Y%m%d}" if moved.year >= 1 else None
    if len(text) == 6:
        month = int(text[4:6])
        if not 1 <= month <= 12:
            return None
        total = year * 12 + month - 1 + round(days / 30.436875)
        return f"{total // 12:04d}{total % 12 + 1:02d}" if total >= 12 else None
    year += round(days / 365.2425)
    return f"{year:04d}" if year >= 1 else None


def _shift_one(vr: str, text: str, days: int) -> str | None:
    if vr == "DA":
        if "-" in text:                       # a range query value: both ends (PS3.4 §C.2.2.2.5)
            parts = [(_shift_date(p, days) if p else "") for p in text.split("-")]
            return None if None in parts else "-".join(parts)
        return _shift_date(text, days)
    # DT: YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]; the date part moves, the time of day stays.
    digits = len(text) - len(text.lstrip("0123456789"))
    head = text[:min(digits, 8)]
    moved = _shift_date(head, days)
    return None if moved is None else moved + text[len(head):]


def shift_value(vr: str, raw: bytes, days: int) -> bytes | None:
    """A DA/DT value (multi-valued too) shifted by days; None when a part cannot be parsed.

    >>> shift_value("DA", b"20240301", -1), shift_value("DT", b"20240301120000.5+0100", -1)
    (b'20240229', b'20240229120000.5+0100 ')
    """
    text = raw.decode("ascii", "replace").strip("\0 ")
    out = []
    for part in text.split("\\"):
        part = part.strip()
        if not part:
            out.append(part)
            continue
        moved = _shift_one(vr, part, days)
        if moved is None:
            return None
        out.append(moved)
    result = "\\".join(out).encode("ascii")
    return result + b" " if len(result) & 1 else result


def parse_date(text: str):
    """A DA value YYYYMMDD as a date; None for any other form (or an invalid date)."""
    if len(text) != 8 or not text.isdigit():
        return None
    from datetime import date

    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def age_string(birth, on) -> str:
    """An AS value (PS3.5 Table 6.2-1) for the age on a day: days under a week, weeks under a
    month, months under two years, else years (at most 999).

    >>> from datetime import date
    >>> age_string(date(2024, 1, 1), date(2024, 1, 5)), age_string(date(2024, 1, 1), date(2024, 4, 2))
    ('004D', '003M')
    >>> age_string(date(1970, 6, 30), date(2024, 6, 29))
    '053Y'
    """
    days = (on - birth).days
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    if days < 7:
        return f"{days:03d}D"
    if months < 1:
        return f"{days // 7:03d}W"
    if months < 24:
        return f"{months:03d}M"
    return f"{min(months // 12, 999):03d}Y"
