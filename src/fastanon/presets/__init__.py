"""Presets are data: the shipped TOML policies and policy files, read and merged (`extends`) into
one specification; policy.build turns it into a Policy on the generated PS3.15 Annex E table.

A preset or policy file says, in words a data-protection officer reads, what happens:

    extends = "research"            # start from a preset (or another file, by path)
    [options]                       # PS3.15 Table E.1-1 option columns as switches
    retain_long_modified_dates = true
    [categories]                    # a whole category at once
    device = "keep"
    [tags]                          # single attributes, by keyword or "(gggg,eeee)"
    PatientAge = "keep"

Keys: `name`, `description`, `extends`, `profile = "basic"` (start from Table E.1-1's Basic
Profile column), `[options]`, `[compound]` (another action for one row's code, instead of
its resolution by the attribute's Type), `hide = [categories]` (each attribute of those categories gets its default action from
categories.toml), `[categories]`, `[tags]`, `private = "remove" | "keep" | "safe"`, `overlays`,
`curves` (the 60xx and 50xx repeating groups), `group_lengths`, `clean_echoes` (kept elements
that repeat the patient's name, IDs, accession number, birth date, address or telephone are
cleaned: echoes.py), `keep_echoes = [keywords]` (kept verbatim all the same), `identifying =
[keywords]` (more attributes whose values identify the patient), `clean_preamble`,
`mark_deidentified` (write PatientIdentityRemoved and DeidentificationMethod, PS3.15 E.1),
`[lookup]` (`file` = a CSV table of prescribed values, relative to the policy file; `key`, the
keyword it is keyed by, PatientID by default; `missing = "refuse" | "pseudonym"`: lookup.py),
`[trial]` (`sponsor`, `protocol_id`, `protocol_name`, `site_id`, `site_name`, `time_point_id`,
`time_point_description`, `coordinating_center`, `series_id`, `series_description`: the
Clinical Trial Subject, Study and Series modules, PS3.3 C.7.1.3, C.7.2.3, C.7.3.2).
Actions resolve in this order, later wins: profile, hide, categories, tags.
"""

from __future__ import annotations

import os

from ..errors import PolicyError

HERE = os.path.dirname(os.path.realpath(__file__))


def names() -> list[str]:
    """The presets shipped with fastanon."""
    return sorted(name[:-5] for name in os.listdir(HERE)
                  if name.endswith(".toml") and name != "categories.toml")


def spec_of(source, seen: tuple = (), read: list | None = None, *, file: bool = False) -> dict:
    """The merged specification of a preset name or a TOML path (a path-like object, a name
    ending in .toml, or anything with file=True), with `extends` resolved; read, when given,
    gets the path of every file read."""
    if file or isinstance(source, os.PathLike) or (isinstance(source, str)
                                                     and source.endswith(".toml")):
        path = os.fspath(source)
    elif source in names():
        path = os.path.join(HERE, f"{source}.toml")
    else:
        raise PolicyError(f"unknown preset {source!r}; expected one of {', '.join(names())} "
                          "or the path of a .toml file")
    if os.path.realpath(path) in seen:
        raise PolicyError(f"{path}: `extends` loops back to itself")
    import tomllib          # only where a policy is read (a mapping policy needs none)

    try:
        with open(path, "rb") as handle:
            spec = tomllib.load(handle)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    if read is not None:
        read.append(path)
    lookup = spec.get("lookup")
    if isinstance(lookup, dict) and isinstance(lookup.get("file"), str) \
            and not os.path.isabs(lookup["file"]):
        spec["lookup"] = {**lookup, "file": os.path.join(os.path.dirname(path), lookup["file"])}
    base = spec.pop("extends", None)
    if base is None:
        return spec
    if isinstance(base, str) and base.endswith(".toml") and not os.path.isabs(base):
        base = os.path.join(os.path.dirname(path), base)
    merged = spec_of(base, seen + (os.path.realpath(path),), read)
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    merged.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return merged
